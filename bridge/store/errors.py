"""The shared store's one error: Redis did not answer in time (or the request's deadline left
no time to ask). Callers never proceed without the store's guarantee; the edge answers it as
a SCIM 503 with ``Retry-After`` (``bridge.edge.errors.SharedStoreUnavailable``,
docs/design/reliability.md)."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """A store call failed or outlived its bound; ``detail`` says which step, in words that
    hold no secret (never the URL), ``retry_after`` the seconds a client should wait."""

    def __init__(self, *, detail: str, retry_after: float = 2) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
