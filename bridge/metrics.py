"""Prometheus metrics (prometheus-client), served at ``/metrics`` when enabled."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response

MULTIPROCESS_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"
"""Set by ``bridge.run.workers`` for its workers: prometheus-client then writes each worker's
samples to files there (gauges below say how workers combine: the lowest, or the sum)."""


STANDARD_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD: Final = "OTHER"


def method_label(method: str) -> str:
    """The ``method`` label of a request: one of :data:`STANDARD_METHODS`, or ``OTHER`` for
    anything a client invents (h11 accepts any token as a method: each new value would be a
    new time series)."""
    return method if method in STANDARD_METHODS else OTHER_METHOD


class Labelled:
    """A metric whose labelled children are looked up once and then kept: prometheus-client's
    ``labels()`` is a measurable share of a GET's CPU (docs/performance.md, Costs the code
    avoids). Label values come from small fixed sets (methods mapped by :func:`method_label`,
    operations, statuses, Modyo calls, configured token names), never from a client's text,
    so the cache is small."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

SCIM_REQUESTS = Labelled(
    Counter(
        "scim_bridge_requests_total",
        "HTTP requests answered, by SCIM operation (users.create, groups.patch...)",
        ["method", "operation", "status"],
    )
)
SCIM_LATENCY = Labelled(
    Histogram(
        "scim_bridge_request_seconds",
        "HTTP request latency, by SCIM operation",
        ["method", "operation"],
        buckets=_LATENCY_BUCKETS,
    )
)
MODYO_CALLS = Labelled(
    Counter(
        "scim_bridge_modyo_calls_total",
        "Modyo API attempts, by call and outcome",
        ["call", "status"],
    )
)
MODYO_LATENCY = Labelled(
    Histogram(
        "scim_bridge_modyo_call_seconds",
        "Modyo API attempt latency",
        ["call"],
        buckets=_LATENCY_BUCKETS,
    )
)
MODYO_RETRIES = Labelled(
    Counter(
        "scim_bridge_modyo_retries_total",
        "Modyo API retries, by call and reason",
        ["call", "reason"],
    )
)
MODYO_IN_FLIGHT = Gauge(
    "scim_bridge_modyo_in_flight", "Modyo API calls in flight", multiprocess_mode="livesum"
)
UPSTREAM_UP = Gauge(
    "scim_bridge_upstream_up",
    "1 when the last readiness probe got an answer from the upstream (Modyo), else 0",
    multiprocess_mode="livemin",
)
UPSTREAM_TOKEN_VALID = Gauge(
    "scim_bridge_upstream_token_valid",
    "1 when the upstream accepted the bridge's token at the last probe it answered, else 0",
    multiprocess_mode="livemin",
)
MODYO_INSECURE = Gauge(
    "scim_bridge_modyo_insecure",
    "1 when modyo.allow_insecure lets the Modyo token travel in plaintext or over unverified "
    "TLS, else 0",
    multiprocess_mode="livemax",
)
STATUS_PROBES = Labelled(
    Counter(
        "scim_bridge_status_probes_total",
        "Probes of the dependencies /status reports, by check (modyo, shared_store) and "
        "result (ok, unreachable, token_rejected, check_failed)",
        ["check", "result"],
    )
)
STATUS_CHANGES = Labelled(
    Counter(
        "scim_bridge_status_changes_total",
        "Changes of a dependency's reported state (its flaps), after "
        "server.status_consecutive probes in a row agreed, by check",
        ["check"],
    )
)
IDEMPOTENCY = Labelled(
    Counter(
        "scim_bridge_idempotency_total",
        "Write requests seen by the idempotency cache, by outcome (executed, replayed, coalesced)",
        ["outcome"],
    )
)


TOKEN_REQUESTS = Labelled(
    Counter(
        "scim_bridge_token_requests_total",
        "SCIM requests authenticated, by the name of the token presented (scim.tokens)",
        ["token"],
    )
)
AUTH_FAILURES = Labelled(
    Counter(
        "scim_bridge_auth_failures_total",
        "SCIM requests refused authentication, by reason (missing, malformed, invalid, "
        "duplicate, throttled)",
        ["reason"],
    )
)
AUTH_THROTTLE_CLIENTS = Gauge(
    "scim_bridge_auth_throttle_clients",
    "Client addresses the failed-authentication throttle remembers (scim.auth_throttle_clients)",
    multiprocess_mode="livesum",
)
BODY_BUFFER_BYTES = Gauge(
    "scim_bridge_body_buffer_bytes",
    "Bytes of request bodies held at once (at most server.max_buffered_body_bytes)",
    multiprocess_mode="livesum",
)
BODY_BUFFER_REFUSED = Counter(
    "scim_bridge_body_buffer_refused_total",
    "Requests answered 503 because server.max_buffered_body_bytes of bodies were held",
)
REQUEST_LIMITS = Labelled(
    Counter(
        "scim_bridge_request_limit_refusals_total",
        "SCIM requests refused by a work limit, by limit (the setting's name)",
        ["limit"],
    )
)


SHARED_STORE_UP = Gauge(
    "scim_bridge_shared_store_up",
    "1 when the last call to the shared idempotency store (Redis) succeeded, else 0",
    multiprocess_mode="livemin",
    registry=None,  # exported once a Redis link exists (export_shared_store_up)
)


def export_shared_store_up() -> None:
    """Export :data:`SHARED_STORE_UP`: only a bridge with the shared store (Redis) has one to
    report; with the memory backend a 0 would read as an outage. (Workers, whose metrics go
    through multiprocess files, always have Redis.)"""
    with contextlib.suppress(ValueError):  # already registered: by an earlier link
        REGISTRY.register(SHARED_STORE_UP)


SHARED_STORE_REFUSED = Counter(
    "scim_bridge_shared_store_refused_writes_total",
    "Writes answered 503 because the shared idempotency store (Redis) did not answer",
)


async def metrics_endpoint(request: Request) -> Response:
    """This process's metrics or, under ``server.workers`` (``bridge.run.workers``), every
    worker's, added up from prometheus-client's multiprocess files."""
    if MULTIPROCESS_DIR not in os.environ:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


JOURNAL_LINES = Counter(
    "scim_bridge_journal_lines_total",
    "Lines written to the provisioning journal (events and the chain's own records)",
)
JOURNAL_DROPPED = Labelled(
    Counter(
        "scim_bridge_journal_dropped_total",
        "Journal events not written, by reason (queue_full, write_error, build_error)",
        ["reason"],
    )
)
JOURNAL_HISTORY_DROPPED = Labelled(
    Counter(
        "scim_bridge_journal_history_dropped_total",
        "Journal events left out of the recent history, by reason (queue_full, unreachable)",
        ["reason"],
    )
)


DRY_RUN = Gauge(
    "scim_bridge_dry_run",
    "1 when the bridge runs a dry run (modyo.dry_run): no write reaches Modyo, else 0",
    multiprocess_mode="livemax",
)
BRAKE_ENGAGED = Labelled(
    Gauge(
        "scim_bridge_brake_engaged",
        "1 while the safety brake holds changes of this kind (disables, deletes...), else 0",
        ["kind"],
        multiprocess_mode="livemax",
    )
)
BRAKE_COUNTED = Labelled(
    Gauge(
        "scim_bridge_brake_counted",
        "Changes of this kind counted in the safety brake's rolling window (last seen)",
        ["kind"],
        multiprocess_mode="livemax",
    )
)
BRAKE_HELD = Labelled(
    Counter(
        "scim_bridge_brake_held_total",
        "Changes held by the safety brake (answered 503), by kind",
        ["kind"],
    )
)
