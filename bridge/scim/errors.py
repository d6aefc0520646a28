"""SCIM errors (RFC 7644 §3.12), built on scim2-models' exception hierarchy.

Handlers raise; :func:`error_response` turns any failure into the Error JSON with
``application/scim+json`` (Entra parses every body, errors included). Upstream failures are
mapped here, the one place the SCIM side learns about them. The errors only the HTTP layer
answers (a refused request head, 405, the shared store's 503, the last-resort 500) are
``bridge.edge.errors``, built on :class:`HeaderedException`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from pydantic import ValidationError
from scim2_models import (
    Error,
    InvalidValueException,
    NotFoundException,
    SCIMException,
    TooManyException,
    UniquenessException,
)

from bridge.logs import mask
from bridge.scim.attributes import GROUP_PATHS, USER_PATHS
from bridge.scim.responses import ScimResponse
from bridge.upstream import (
    BadGateway,
    Conflict,
    GroupField,
    NotFound,
    Rejected,
    TooManyCalls,
    Unavailable,
    UnknownMembers,
    UpstreamError,
    UserField,
)


class HeaderedException(SCIMException):
    """A SCIM error that also sets response headers (``Allow``, ``Retry-After``...)."""

    def __init__(self, *, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail=detail)
        self.headers = dict(headers or {})


class BadRequest(HeaderedException):
    """400 without a ``scimType``: the request fails HTTP, not SCIM (its ``Host``)."""

    status = 400


class PayloadTooLarge(HeaderedException):
    status = 413


class Unauthorized(HeaderedException):
    status = 401


class UpstreamUnavailable(HeaderedException):
    """503 + ``Retry-After``: Modyo is throttling, down or slower than the deadline."""

    status = 503


class UpstreamBadGateway(HeaderedException):
    status = 502


def scim_name(field: UserField | GroupField | None) -> str | None:
    """The SCIM attribute an upstream field is (``bridge.scim.attributes``)."""
    if isinstance(field, UserField):
        return 'emails[type eq "work"].value' if field is UserField.EMAIL else USER_PATHS[field]
    return GROUP_PATHS[field] if isinstance(field, GroupField) else None


def retry_after_header(seconds: float | None) -> str:
    """``Retry-After`` for Entra (RFC 9110 §10.2.3): whole seconds, at least one."""
    return str(max(1, math.ceil(seconds or 1)))


def unknown_members(ids: Iterable[str]) -> InvalidValueException:
    """400 ``invalidValue`` naming every member id that is not a user."""
    return InvalidValueException(
        detail="members refer to users that do not exist: " + ", ".join(sorted(ids))
    )


def from_upstream(failure: UpstreamError, *, resource: str) -> SCIMException:
    """The SCIM error for an upstream failure (its detail is masked when rendered)."""
    if isinstance(failure, NotFound):
        return NotFoundException(detail=f"{resource} not found")
    if isinstance(failure, Conflict):
        name = scim_name(failure.field)
        what = f"a {resource} with this {name} already exists" if name else failure.detail
        return UniquenessException(detail=f"{what} (Modyo: {failure.detail})")
    if isinstance(failure, UnknownMembers):
        return unknown_members(failure.ids)
    if isinstance(failure, TooManyCalls):  # more work than one request may cause
        return TooManyException(detail=failure.detail)
    if isinstance(failure, Rejected):
        name = scim_name(failure.field)
        return InvalidValueException(detail=f"{name}: {failure.detail}" if name else failure.detail)
    if isinstance(failure, Unavailable):
        return UpstreamUnavailable(
            detail=failure.detail + "; retry later",
            headers={"Retry-After": retry_after_header(failure.retry_after)},
        )
    if isinstance(failure, BadGateway):
        return UpstreamBadGateway(detail=failure.detail)
    return UpstreamBadGateway(detail=f"unexpected upstream failure: {failure.detail}")


def from_validation(error: ValidationError) -> SCIMException:
    """The first problem of a pydantic/scim2-models validation, as a SCIM error that speaks
    SCIM: ``active must be a boolean (true or false)``, naming the attribute path as RFC 7644
    §3.10 writes it, never pydantic's ``1 validation error for User[...] ... [type=...]``.
    The status and ``scimType`` are scim2-models' reading of the error (RFC 7644 §3.12)."""
    problems = error.errors(include_url=False)
    if not problems:
        return InvalidValueException(detail="the request is not valid")
    first = problems[0]
    keyword = Error.from_validation_error(first)
    path = _attribute_path(first["loc"])
    phrase = _phrase(first)
    detail = f"{path} {phrase}" if path and not first["type"].startswith("scim_") else phrase
    return SCIMException.from_error(
        Error(status=keyword.status or 400, scim_type=keyword.scim_type, detail=detail)
    )


_PHRASES: Final = {
    "bool_parsing": "must be a boolean (true or false)",
    "bool_type": "must be a boolean (true or false)",
    "string_type": "must be a string",
    "string_too_long": "is too long",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "model_attributes_type": "must be an object",
    "missing": "is required",
    "datetime_parsing": "must be a date-time (RFC 3339)",
    "datetime_type": "must be a date-time (RFC 3339)",
    "url_parsing": "must be a URI",
    "url_type": "must be a URI",
    "extra_forbidden": "is not an attribute of this resource",
}


def _phrase(error: Mapping[str, Any]) -> str:
    kind = str(error["type"])
    if kind == "value_error" and "error" in (error.get("ctx") or {}):
        return str(error["ctx"]["error"])
    if kind == "required_error" and "field_name" in (error.get("ctx") or {}):
        return f"{error['ctx']['field_name']} is required"
    if kind == "enum":
        expected = (error.get("ctx") or {}).get("expected")
        return f"must be one of {expected}" if expected else "is not one of the allowed values"
    return _PHRASES.get(kind, str(error["msg"]))


def _attribute_path(loc: Sequence[str | int]) -> str:
    """A pydantic error location as an attribute path: ``emails[0].value``, and
    ``urn:…:enterprise:2.0:User:department`` for an extension's attribute (RFC 7644 §3.10).
    Union members (``function-after[...]``) are left out."""
    path, previous = "", ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        if "[" in part or "(" in part:
            continue
        separator = ":" if previous.startswith("urn:") else "."
        path = f"{path}{separator}{part}" if path else part
        previous = part
    return path


def _readable(detail: str) -> str:
    """Drop pydantic's "For further information visit <url>" lines from a detail."""
    lines = [line.strip() for line in detail.splitlines() if "errors.pydantic.dev" not in line]
    return " ".join(line for line in lines if line)


MAX_DETAIL: Final = 1000
"""A detail may quote what was sent (``got '…'``); past this many characters it is cut, so
an error answer stays a message, not a copy of a megabyte of input."""


def _bounded(detail: str) -> str:
    return detail if len(detail) <= MAX_DETAIL else detail[: MAX_DETAIL - 1] + "\u2026"


def error_response(exc: SCIMException) -> ScimResponse:
    """The RFC 7644 §3.12 Error answer for ``exc``. Its ``detail`` may quote Modyo's words
    (a refusal's message), which may quote the request Modyo got: every secret the process
    knows is masked in it, as in log lines (``bridge.logs.mask``), before it is cut to
    :data:`MAX_DETAIL`."""
    if isinstance(exc.__cause__, ValidationError) and not isinstance(exc, HeaderedException):
        exc = type(exc)(detail=from_validation(exc.__cause__).detail)  # not pydantic's text
    error = exc.to_error()
    body: dict[str, object] = {"schemas": [str(Error.__schema__)], "status": str(exc.status)}
    if error.scim_type:
        body["scimType"] = error.scim_type
    body["detail"] = _bounded(mask(_readable(exc.detail)))
    headers = exc.headers if isinstance(exc, HeaderedException) else None
    return ScimResponse(body, status_code=exc.status, headers=headers)


class PartialWrite(Exception):
    """A multi-step write failed after some steps were applied upstream."""

    def __init__(self, failure: UpstreamError, applied: list[str], pending: list[str]) -> None:
        super().__init__(failure.detail)
        self.failure = failure
        self.applied = applied
        self.pending = pending

    def to_scim(self, resource: str) -> SCIMException:
        """The failure's own SCIM error, its detail saying what was and was not applied."""
        base = from_upstream(self.failure, resource=resource)
        detail = (
            f"{base.detail}. Applied before the failure: {', '.join(self.applied)}. "
            f"Not applied: {', '.join(self.pending)}. Re-sending the same PATCH is safe: "
            "every operation converges."
        )
        if isinstance(base, HeaderedException):
            return type(base)(detail=detail, headers=base.headers)
        return type(base)(detail=detail)
