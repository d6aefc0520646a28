"""The shared store: the idempotency cache's answers and single-flight (``answers``: the
interface and the memory store; ``redis_answers``), the create locks across processes
(``redis_locks``), the connection to Redis (``redis_link``) and the store's one error
(``errors``). Below the SCIM and Modyo sides: anything may use it, it uses only the base
(docs/design/layers.md)."""
