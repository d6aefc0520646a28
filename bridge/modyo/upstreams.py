"""The two Modyo interfaces as upstreams (``modyo.api``): the Administration REST API
(``rest``) and Modyo's own SCIM server (``scim``), over the same HTTP plumbing (token,
timeouts, transport, retries, in-flight bound, metrics) whichever it is."""

from __future__ import annotations

from typing import Literal

import httpx

from bridge.config import ModyoSettings, RetrySettings
from bridge.modyo import rest, scim
from bridge.modyo.group_directory import MemoryGroupDirectory
from bridge.modyo.http import ModyoHttp
from bridge.modyo.rest import RestUpstream
from bridge.modyo.retry import RetryPolicy
from bridge.modyo.scim import MEDIA_TYPE, ScimUpstream

Api = Literal["rest", "scim"]


def rest_upstream(
    modyo: ModyoSettings, retry: RetrySettings, transport: httpx.AsyncBaseTransport | None = None
) -> RestUpstream:
    return RestUpstream(ModyoHttp(modyo, RetryPolicy(retry), transport))


def scim_upstream(
    modyo: ModyoSettings, retry: RetrySettings, transport: httpx.AsyncBaseTransport | None = None
) -> ScimUpstream:
    http = ModyoHttp(modyo, RetryPolicy(retry), transport, MEDIA_TYPE)
    size = modyo.group_directory_size
    directory = MemoryGroupDirectory(size) if size else None
    return ScimUpstream(http, directory, modyo.group_directory_max_age_seconds)


def modyo_upstream(
    api: Api,
    modyo: ModyoSettings,
    retry: RetrySettings,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RestUpstream | ScimUpstream:
    """The interface ``api`` names."""
    if api == "scim":
        return scim_upstream(modyo, retry, transport)
    return rest_upstream(modyo, retry, transport)


def write_calls(api: Api) -> dict[str, tuple[tuple[str, str, int], ...]]:
    """The Modyo calls each write of the interface ``api`` makes (what a dry run plans)."""
    return dict(scim.WRITES if api == "scim" else rest.WRITES)
