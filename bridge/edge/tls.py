"""TLS on a listener (``server.tls_cert_file``, ``internal.tls_cert_file``): TLS 1.2 and 1.3
only, and a certificate replaced on disk taken without a restart.

The server layer (``bridge.edge.protocols``) asks :meth:`TlsFiles.current` for the context of every
new connection. It compares the files' identity (inode, size, modification time, following
symlinks) with the last load and loads them again when either changed, so the first
handshake after cert-manager (or anyone) replaces them presents the new certificate;
connections already open keep theirs. A pair that does not load (a certificate written
before its key) keeps the previous one in service, with a warning, until the files change
again. Kubernetes updates a Secret volume by swapping a ``..data`` symlink, in one step.
See docs/operator/listeners.md.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

log = logging.getLogger("bridge.edge.tls")

Stamp = tuple[tuple[int, int, int], ...]


def server_context(cert: Path, key: Path | None) -> ssl.SSLContext:
    """A server context presenting ``cert`` (with ``key``, unless ``cert`` holds it): TLS 1.2
    and 1.3 only (RFC 8996 deprecates 1.0 and 1.1), no renegotiation, HTTP/1.1 by ALPN."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert, key)
    return context


class TlsFiles:
    """A listener's certificate and key files, and the context they make."""

    def __init__(self, cert: Path, key: Path | None, listener: str) -> None:
        self.cert, self.key, self.listener = cert, key, listener
        self._stamp = self._stamp_now()
        self._context = server_context(cert, key)  # valid: the settings loaded it

    def _stamp_now(self) -> Stamp:
        files = (self.cert,) if self.key is None else (self.cert, self.key)
        return tuple(
            (found.st_ino, found.st_size, found.st_mtime_ns)
            for found in (os.stat(path) for path in files)
        )

    def current(self) -> ssl.SSLContext:
        """The context for a new connection: the files' as they are now, or the last one that
        loaded if they do not (a replacement under way)."""
        try:
            stamp = self._stamp_now()
        except OSError:  # a file missing for a moment while it is replaced
            return self._context
        if stamp == self._stamp:
            return self._context
        self._stamp = stamp
        try:
            self._context = server_context(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            log.warning(
                "the TLS certificate of the %s listener was replaced by one that does not "
                "load (%s): still presenting the previous one",
                self.listener,
                getattr(exc, "reason", None) or exc.strerror or type(exc).__name__,
            )
        else:
            log.info("the %s listener presents the replaced TLS certificate", self.listener)
        return self._context
