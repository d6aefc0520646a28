"""What the Overview page shows: readiness and each check's last result, the Modyo
interface, the shared store, version and uptime, and what to enter in Entra
(docs/operator/console.md, "Overview").

Readiness is read from the :class:`~bridge.readiness.Readiness` the SCIM app probes with;
:func:`checks` is the one place that reads its results, the seam to a status report of the
internal listener when there is one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge import __version__
from bridge.config import Settings
from bridge.readiness import Readiness


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    result: str
    """``ok``, the check's reason (``modyo_unreachable``), or ``not run yet``."""
    ok: bool


@dataclass(frozen=True, slots=True)
class Overview:
    ready: bool
    reason: str | None
    checks: list[Check]
    checked_seconds_ago: float | None
    """Age of the last completed round of checks (None: none completed yet)."""
    warnings: list[str]
    modyo_api: str
    modyo_host: str
    modyo_token: str
    """``valid``, ``rejected`` or ``unknown`` (Modyo not reached yet)."""
    store: str
    version: str
    uptime_seconds: float
    tenant_url: str
    scim_token_names: list[str]
    replicas: list[str]


def checks(readiness: Readiness) -> tuple[list[Check], float | None]:
    """Each check's last result, and the age of the last completed round."""
    results: Mapping[str, object] = readiness._results
    found = [
        Check(name, "ok" if result is None else _text(result), result is None)
        for name, result in results.items()
    ]
    completed = readiness._completed_at
    age = None if completed is None else max(0.0, readiness._clock() - completed)
    return found, age


def _text(result: object) -> str:
    return result if isinstance(result, str) else "not run yet"


def overview(
    settings: Settings,
    readiness: Readiness | None,
    started: float,
    replicas: list[str],
    clock: Any = time.monotonic,
) -> Overview:
    """The Overview page's facts; nothing secret (token names, never values)."""
    found: list[Check] = []
    age = None
    reason: str | None = "no readiness checks in this process"
    warnings: list[str] = []
    if readiness is not None:
        found, age = checks(readiness)
        reason = readiness.reason()
        warnings = list(readiness.warnings)
    modyo = next((check for check in found if check.name == "modyo"), None)
    if modyo is None or not (modyo.ok or modyo.result == "modyo_token_rejected"):
        token = "unknown"  # noqa: S105 (a state, not a password)
    else:
        token = "valid" if modyo.ok else "rejected"
    idempotency = settings.idempotency
    store = "memory (this process only)"
    if idempotency.backend == "redis":
        where = "Sentinel" if idempotency.redis_sentinels else "Redis"
        store = f"{where} (shared by every replica), key prefix {idempotency.key_prefix}"
    return Overview(
        ready=reason is None,
        reason=reason,
        checks=found,
        checked_seconds_ago=age,
        warnings=warnings,
        modyo_api=settings.modyo.api,
        modyo_host=settings.modyo.base_url.host or "",
        modyo_token=token,
        store=store,
        version=__version__,
        uptime_seconds=max(0.0, clock() - started),
        tenant_url=tenant_url(settings),
        scim_token_names=sorted(settings.scim.tokens),
        replicas=replicas,
    )


def tenant_url(settings: Settings) -> str:
    """The Tenant URL to enter in Entra: the public URL and the base path, else a template
    of them (the host Entra reaches is not known here)."""
    server = settings.server
    if server.public_url is not None:
        return str(server.public_url).rstrip("/") + server.base_path
    return f"https://<public host>{server.base_path}"


def duration(seconds: float) -> str:
    """``3d 4h``, ``5h 2m``, ``12m 3s``, ``40s``: for people."""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
