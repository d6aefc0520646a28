"""The idempotency cache: a retried write never reaches Modyo twice, while every answer stays
what RFC 7644 prescribes (``middleware``); where its answers and single-flight live
(``store``)."""

from bridge.idempotency.middleware import IdempotencyMiddleware
from bridge.idempotency.store import (
    Flight,
    IdempotencyStore,
    Kept,
    Lead,
    MemoryStore,
    Outcome,
    StoredAnswer,
)

__all__ = [
    "Flight",
    "IdempotencyMiddleware",
    "IdempotencyStore",
    "Kept",
    "Lead",
    "MemoryStore",
    "Outcome",
    "StoredAnswer",
]
