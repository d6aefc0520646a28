"""SCIM errors (RFC 7644 §3.12), built on scim2-models' exception hierarchy.

Handlers raise; :func:`error_response` turns any failure into the Error JSON with
``application/scim+json`` (Entra parses every body, errors included). Upstream failures are
mapped here, the one place the SCIM side learns about them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from pydantic import ValidationError
from scim2_models import (
    Error,
    InvalidValueException,
    NotFoundException,
    SCIMException,
    UniquenessException,
)

from bridge.scim.responses import ScimResponse
from bridge.upstream import (
    BadGateway,
    Conflict,
    GroupField,
    NotFound,
    Rejected,
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


class MethodNotAllowed(HeaderedException):
    status = 405


class PayloadTooLarge(HeaderedException):
    status = 413


class Unauthorized(HeaderedException):
    status = 401


class UpstreamUnavailable(HeaderedException):
    """503 + ``Retry-After``: Modyo is throttling, down or slower than the deadline."""

    status = 503


class UpstreamBadGateway(HeaderedException):
    status = 502


class InternalError(HeaderedException):
    status = 500


SCIM_NAME = {
    UserField.USER_NAME: "userName",
    UserField.EMAIL: 'emails[type eq "work"].value',
    GroupField.DISPLAY_NAME: "displayName",
}


def retry_after_header(seconds: float | None) -> str:
    """``Retry-After`` for Entra (RFC 9110 §10.2.3): whole seconds, at least one."""
    return str(max(1, math.ceil(seconds or 1)))


def unknown_members(ids: Iterable[str]) -> InvalidValueException:
    """400 ``invalidValue`` naming every member id that is not a user."""
    return InvalidValueException(
        detail="members refer to users that do not exist: " + ", ".join(sorted(ids))
    )


def from_upstream(failure: UpstreamError, *, resource: str) -> SCIMException:
    """The SCIM error for an upstream failure. ``detail`` never holds credentials."""
    if isinstance(failure, NotFound):
        return NotFoundException(detail=f"{resource} not found")
    if isinstance(failure, Conflict):
        name = SCIM_NAME.get(failure.field) if failure.field else None
        what = f"a {resource} with this {name} already exists" if name else failure.detail
        return UniquenessException(detail=f"{what} (Modyo: {failure.detail})")
    if isinstance(failure, UnknownMembers):
        return unknown_members(failure.ids)
    if isinstance(failure, Rejected):
        return InvalidValueException(detail=failure.detail)
    if isinstance(failure, Unavailable):
        return UpstreamUnavailable(
            detail=failure.detail + "; retry later",
            headers={"Retry-After": retry_after_header(failure.retry_after)},
        )
    if isinstance(failure, BadGateway):
        return UpstreamBadGateway(detail=failure.detail)
    return UpstreamBadGateway(detail=f"unexpected upstream failure: {failure.detail}")


def from_validation(error: ValidationError) -> SCIMException:
    """The first problem of a pydantic/scim2-models validation, as a SCIM error."""
    errors = Error.from_validation_errors(error)
    first = errors[0] if errors else Error(status=400, scim_type="invalidValue", detail=str(error))
    return SCIMException.from_error(first)


def _readable(detail: str) -> str:
    """Drop pydantic's "For further information visit <url>" lines from a detail."""
    lines = [line.strip() for line in detail.splitlines() if "errors.pydantic.dev" not in line]
    return " ".join(line for line in lines if line)


def error_response(exc: SCIMException) -> ScimResponse:
    error = exc.to_error()
    body: dict[str, object] = {"schemas": [str(Error.__schema__)], "status": str(exc.status)}
    if error.scim_type:
        body["scimType"] = error.scim_type
    body["detail"] = _readable(exc.detail)
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
