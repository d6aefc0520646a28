"""Responses with ``Content-Type: application/scim+json`` (RFC 7644 §8.1; Entra requires it)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

SCIM_MEDIA_TYPE = "application/scim+json"


class ScimResponse(Response):
    media_type = SCIM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        if content is None:
            return b""
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def no_content() -> Response:
    """204 (DELETE, group PATCH): no body, but the SCIM media type all the same."""
    return Response(status_code=204, headers={"Content-Type": SCIM_MEDIA_TYPE})
