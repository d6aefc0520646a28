"""What every SCIM endpoint of one app shares: the upstream, what it serves, the limits, the
create locks, and how to spell the bridge's own URLs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from starlette.requests import Request

from bridge.scim.attributes import Served, served
from bridge.scim.locks import CreateLocks, KeyedLocks
from bridge.upstream import Upstream


@dataclass(frozen=True, slots=True)
class Limits:
    """The work one SCIM request may ask for, each answered before any upstream call
    (``[scim]`` settings of the same names; docs/operator/security.md)."""

    max_filter_length: int = 4096
    max_filter_comparisons: int = 20
    max_patch_members: int = 1000
    max_patch_operations: int = 1000
    max_json_values: int = 10_000


@dataclass(slots=True)
class ScimContext:
    upstream: Upstream
    max_page_size: int
    public_url: str | None
    max_filter_scan: int
    """Most objects a filter the upstream cannot search may be evaluated over (beyond: 400
    ``tooMany``, RFC 7644 §3.4.2.2 and §3.12)."""
    creating: CreateLocks = field(default_factory=KeyedLocks)
    limits: Limits = field(default_factory=Limits)

    @property
    def served(self) -> Served:
        """The SCIM attributes served, derived from what the upstream holds."""
        return served(self.upstream.holds)

    def base_url(self, request: Request) -> str:
        """The Tenant URL as Entra uses it (``https://host/scim``), for ``Location`` and
        ``meta.location``. Behind a TLS proxy, ``server.public_url`` makes it the public one;
        without it, the request's scheme and host, which a trusted proxy's X-Forwarded-Proto
        and X-Forwarded-Host have set (``bridge.edge.forwarded``)."""
        root = str(request.scope.get("root_path", ""))
        if self.public_url:
            return self.public_url.rstrip("/") + root
        return _origin(request) + root


def _origin(request: Request) -> str:
    """``scheme://authority`` as Starlette's ``request.url`` spells it, without building and
    parsing the request's whole URL when the ``Host`` header is a plain name or IPv4
    address with at most a port (what every Starlette takes as it is); any other ``Host``
    goes through ``request.url``."""
    for name, value in request.scope["headers"]:
        if name == b"host":
            if _PLAIN_HOST.fullmatch(value):
                return f"{str(request.scope.get('scheme', 'http')).lower()}://{value.decode()}"
            break
    url = request.url
    return f"{url.scheme}://{url.netloc}"


_PLAIN_HOST: Final = re.compile(
    rb"[A-Za-z0-9][A-Za-z0-9.-]*(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}"
    rb"|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
)
"""A name or IPv4 address, and a port from 1 to 65535 without leading zeros."""
