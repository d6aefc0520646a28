"""Running the HTTP server: uvicorn with the bridge's protocols (``bridge.edge.protocols``), one
SCIM listener and the internal one beside it, their TLS, connection caps and the file
descriptors they need; stopping on signals without tracebacks. docs/operator/listeners.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, Literal

import uvicorn
from starlette.types import ASGIApp

from bridge.config import InternalSettings, ServerSettings
from bridge.edge.protocols import (
    MAX_HEAD_BYTES,
    MAX_REFUSING,
    EndQuietly,
    close_unadmitted,
    listener_protocols,
)
from bridge.edge.tls import TlsFiles

log = logging.getLogger("bridge.run.server")

YOUNG_COLLECTION_THRESHOLD: Final = 10_000
"""Net allocations between two collections of the garbage collector's youngest generation
(CPython's default: 700). docs/performance.md, Costs the code avoids."""

FD_RESERVE: Final = 192
"""File descriptors besides client connections: the Modyo pool (64 by default), listener,
log and standard streams, the event loop's own."""


def settle_heap() -> None:
    """The garbage collector, set for serving (docs/performance.md, Costs the code avoids).

    Everything imported and built so far lives as long as the process: frozen, no full
    collection re-scans it. Young collections come every :data:`YOUNG_COLLECTION_THRESHOLD`
    net allocations instead of 700: under load, the objects of the requests in flight, freed
    after a collection has counted them, keep the count climbing, and each young collection
    walks every live young object; the request path leaves no reference cycles to collect."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


class Server(uvicorn.Server):
    """uvicorn's server; on a forced exit it still answers what is in flight and closes the
    app (the Modyo client) instead of leaving both to be cancelled with tracebacks. A
    ``companion`` (the internal listener, served in the same loop) stops with it, before
    uvicorn hands the stopping signal on to the process. ``on_drain`` is told first
    (``Readiness.drain``: ``/readyz`` then answers 503 on connections still open)."""

    companion: tuple[uvicorn.Server, asyncio.Task[None]] | None = None
    on_started: Callable[[], None] | None = None
    """Called once the listener listens and the app has started (what ``dev`` and ``serve``
    print then)."""
    on_drain: Callable[[], None] | None = None
    """Called when stopping starts (readiness then answers ``draining``)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.on_drain is not None:
            self.on_drain()
        close_unadmitted(self.config.http_protocol_class)
        await super().shutdown(sockets)
        if self.force_exit:
            in_flight = list(self.server_state.tasks)
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            await self.lifespan.shutdown()
        if self.companion is not None:
            other, serving = self.companion
            other.should_exit = True
            other.force_exit = self.force_exit
            await serving


def loop_name() -> str:
    """uvloop when installed (a dependency; Windows lacks it)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def server_config(app: ASGIApp, server: ServerSettings) -> uvicorn.Config:
    """uvicorn's configuration for the SCIM listener, protocols (and TLS) included."""
    tls = _tls(server.tls_cert_file, server.tls_key_file, "SCIM")
    return _listener_config(app, server.host, server.port, server, server.max_connections, tls)


def _tls(cert: Path | None, key: Path | None, listener: str) -> TlsFiles | None:
    return None if cert is None else TlsFiles(cert, key, listener)


def internal_config(
    app: ASGIApp, internal: InternalSettings, server: ServerSettings
) -> uvicorn.Config:
    """The internal listener (``[internal]``): the SCIM listener's protocols, parser and
    timeouts (``server.*``), with its own address and connection cap, and so its own share of
    file descriptors (docs/operator/listeners.md)."""
    if internal.port is None:
        raise ValueError("internal.port is not set: there is no internal listener")
    tls = _tls(internal.tls_cert_file, internal.tls_key_file, "internal")
    return _listener_config(
        app, internal.host, internal.port, server, internal.max_connections, tls, lifespan="off"
    )


def _listener_config(
    app: ASGIApp,
    host: str,
    port: int,
    server: ServerSettings,
    max_connections: int,
    tls: TlsFiles | None,
    lifespan: Literal["on", "off"] = "on",
) -> uvicorn.Config:
    """The TLS of a listener is the server layer's (``bridge.edge.tls``), not uvicorn's: a
    handshake is then counted among ``max_connections`` and bounded by the header timeout,
    and the certificate is read again when its files change."""
    H11, HttpTools = listener_protocols(
        server.header_timeout_seconds, server.body_timeout_seconds, max_connections, tls
    )
    return uvicorn.Config(
        EndQuietly(app),
        host=host,
        port=port,
        loop=loop_name(),
        http=H11 if server.http_parser == "h11" else HttpTools,
        ws="none",
        lifespan=lifespan,  # the internal listener's apps live in the SCIM app's lifespan
        log_config=None,
        access_log=False,
        proxy_headers=False,  # the app handles X-Forwarded-* itself (bridge/edge/forwarded.py)
        server_header=False,
        # uvicorn hands it to loop.call_later, which takes fractions of a second.
        timeout_keep_alive=server.keepalive_timeout_seconds,  # type: ignore[arg-type]
        # Without it uvicorn waits for every connection and task forever after SIGTERM.
        timeout_graceful_shutdown=server.shutdown_timeout_seconds,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )


def ensure_file_descriptors(*max_connections: int) -> None:
    """Raise the open-files soft limit to what the listeners need (up to the hard limit):
    each its ``max_connections`` and its refusals under way, plus :data:`FD_RESERVE`, so the
    bridge refuses connections in SCIM form before ``accept()`` fails."""
    if sys.platform == "win32":
        return
    import resource

    needed = sum(cap + MAX_REFUSING for cap in max_connections) + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log.warning(
            "max_connections (server, internal) need %d open files, the limit is %d: raise "
            "it (ulimit -n) or lower max_connections",
            needed,
            target,
        )


Internal = tuple[ASGIApp, InternalSettings]
"""The internal listener: its app (``bridge.edge.app.internal_app``) and settings."""


def serve(
    app: ASGIApp,
    server: ServerSettings,
    internal: Internal | None = None,
    on_started: Callable[[], None] | None = None,
    on_drain: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM (a second SIGINT stops without waiting), and
    the internal listener beside it when given; ``on_started`` once the SCIM listener
    listens, ``on_drain`` when stopping starts."""
    caps = [server.max_connections] + ([internal[1].max_connections] if internal else [])
    ensure_file_descriptors(*caps)
    main = Server(server_config(app, server))
    main.on_started = on_started
    main.on_drain = on_drain
    if internal is None:
        main.run()
        return
    side = internal_server(*internal, server)

    async def both() -> None:
        listener = asyncio.create_task(side.serve())
        main.companion = (side, listener)  # stopped by main's shutdown
        try:
            await main.serve()
        finally:
            if not listener.done():  # main never started
                side.should_exit = True
                await listener

    with asyncio.Runner(loop_factory=main.config.get_loop_factory()) as runner:
        runner.run(both())


def internal_server(app: ASGIApp, internal: InternalSettings, server: ServerSettings) -> Server:
    """The internal listener's server: stopped by whoever runs it, not by signals."""
    return _InternalServer(internal_config(app, internal, server))


class _InternalServer(Server):
    """A second listener of the same process: it leaves the signals to the main server (or
    the workers' supervisor), which stops it when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
