"""The HTTP layer's own errors: what the edge answers before or around the SCIM endpoints
(the server's refusals of a request head, bodies, an unknown method, the shared store, the
last-resort 500). Each is a SCIM error all the same (RFC 7644 §3.12 Error JSON, rendered by
``bridge.scim.errors.error_response``): Entra parses every body. The errors the SCIM side
raises itself (401, 413, an upstream's 502 and 503...) are in ``bridge.scim.errors``.
"""

from __future__ import annotations

from bridge.scim.errors import HeaderedException, retry_after_header


class MethodNotAllowed(HeaderedException):
    """405 + ``Allow``: the path is served, not with this method (RFC 9110 §15.5.6)."""

    status = 405


class SharedStoreUnavailable(HeaderedException):
    """503 + ``Retry-After``: the shared store (Redis) that makes replicas behave as one did
    not answer in time, so a write is refused rather than run without its guarantees (no
    replay of a lost answer, no lock against a concurrent twin on another replica)."""

    status = 503

    def __init__(self, *, detail: str, retry_after: float = 2) -> None:
        super().__init__(
            detail=f"{detail}; retry later",
            headers={"Retry-After": retry_after_header(retry_after)},
        )


class InternalError(HeaderedException):
    """500: the last resort, for a failure nothing else answered (RFC 7644 §3.12)."""

    status = 500


class BodyBufferFull(HeaderedException):
    """503 + ``Retry-After``: other requests' bodies fill the buffer (RFC 9110 §15.6.4)."""

    status = 503


class RequestTimeout(HeaderedException):
    """408: the client did not send its request in time; the connection is closed."""

    status = 408


class UriTooLong(HeaderedException):
    """414: the request line is too long (RFC 9110 §15.5.15, RFC 9112 §3)."""

    status = 414


class HeaderFieldsTooLarge(HeaderedException):
    """431: the header fields are too many or too large (RFC 6585 §5)."""

    status = 431


class NotImplementedByServer(HeaderedException):
    """501: a transfer coding the server does not implement (RFC 9112 §6.1)."""

    status = 501


class ServerBusy(HeaderedException):
    """503 + ``Retry-After``: ``max_connections`` are open (docs/operator/listeners.md)."""

    status = 503


class VersionNotSupported(HeaderedException):
    """505: an HTTP version other than 1.0 and 1.1 (RFC 9110 §15.6.6)."""

    status = 505
