"""What the Overview page shows: readiness and each check's last result, the Modyo
interface, the shared store, version and uptime, and what to enter in Entra
(docs/operator/console.md, "Overview").

Readiness is read from the :class:`~bridge.edge.readiness.Readiness` the SCIM app probes with;
:func:`checks` is the one place that reads its results: the status report ``/status``
serves when the readiness has one, else its last results.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge import __version__
from bridge.config import Settings
from bridge.edge.readiness import Readiness


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


def checks(
    readiness: Readiness, wall: Callable[[], float] = time.time
) -> tuple[list[Check], float | None]:
    """Each check's last result, and the age of the last completed round (or probe): from
    the readiness' status report (``status_report()``, as ``/status`` serves it) when it
    has one, else from its last results."""
    report = getattr(readiness, "status_report", None)
    if callable(report):
        return _from_report(report(), wall())
    results: Mapping[str, object] = getattr(readiness, "_results", {})
    found = [
        Check(name, "ok" if result is None else _text(result), result is None)
        for name, result in results.items()
    ]
    completed = getattr(readiness, "_completed_at", None)
    clock: Callable[[], float] = getattr(readiness, "_clock", time.monotonic)
    age = None if completed is None else max(0.0, clock() - completed)
    return found, age


def _from_report(report: Mapping[str, Any], now: float) -> tuple[list[Check], float | None]:
    found: list[Check] = []
    ages: list[float] = []
    for name, status in (report.get("checks") or {}).items():
        state = str(status.get("state", "unknown"))
        found.append(Check(name, "ok" if state == "ok" else state, state == "ok"))
        probed = (status.get("last_probe") or {}).get("at")
        if isinstance(probed, str):
            with contextlib.suppress(ValueError):
                ages.append(max(0.0, now - datetime.fromisoformat(probed).timestamp()))
    return found, (max(ages) if ages else None)


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
    token = "unknown"  # noqa: S105 (a state, not a password)
    if modyo is not None and modyo.ok:
        token = "valid"  # noqa: S105
    elif modyo is not None and modyo.result.endswith("token_rejected"):
        token = "rejected"  # noqa: S105
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
