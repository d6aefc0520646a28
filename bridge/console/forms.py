"""The console's form posts, read within a small bound: a sign-in is unauthenticated, so
reading it must cost little more than its head (docs/operator/security.md)."""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl

from starlette.requests import Request

MAX_FORM_BYTES: Final = 4096
FORM_TYPE: Final = "application/x-www-form-urlencoded"


class FormRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def read_form(request: Request) -> dict[str, str]:
    """The fields of an urlencoded form of at most :data:`MAX_FORM_BYTES` (the first value of
    a repeated field); a larger or other body is refused (413, 415) without reading on."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise FormRefused(415, "a form post is application/x-www-form-urlencoded")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise FormRefused(413, "the form is too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormRefused(413, "the form is too large")
    try:
        pairs = parse_qsl(body.decode("latin-1"), max_num_fields=16, encoding="utf-8")
    except ValueError:
        raise FormRefused(400, "the form has too many fields") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields
