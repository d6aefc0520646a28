"""Responses with ``Content-Type: application/scim+json`` (RFC 7644 §8.1; Entra requires it)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

SCIM_MEDIA_TYPE = "application/scim+json"


class ScimResponse(Response):
    media_type = SCIM_MEDIA_TYPE
    _encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def render(self, content: Any) -> bytes:
        if content is None:
            return b""
        return self._encode(content).encode("utf-8")


def no_content() -> Response:
    """204 (DELETE, group PATCH): no content, so no ``Content-Type`` either (RFC 9110
    §8.3, §15.3.5: the header describes content a 204 cannot have)."""
    return Response(status_code=204)


def list_response(resources: list[dict[str, Any]], total: int, start_index: int) -> dict[str, Any]:
    """RFC 7644 §3.4.2: a ListResponse, also for zero results (Entra's "no match")."""
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
