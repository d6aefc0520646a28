"""Behind a TLS proxy: ``X-Forwarded-Proto``/``-Host``/``-For`` from an address in
``server.forwarded_allow_ips`` decide ``Location``, ``meta.location`` and the logged client;
from any other address they are ignored; ``server.public_url`` still wins. Over real HTTP, the
client connecting from 127.0.0.1 (trusted by default) or from 127.0.0.2 (not trusted)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from starlette.requests import Request

from bridge.edge.app import create_app
from bridge.edge.forwarded import forwarded_host
from bridge.edge.hosts import _HOST, host_header_problem
from bridge.modyo.fake import FakeModyo, FaultyModyo, mock_transport
from bridge.scim.context import _origin
from tests import entra
from tests.harness import MODYO_URL, TOKEN, LogOutput, make_settings, quiet_readiness
from tests.servers import uvicorn_serving

PUBLIC = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "scim.bank.example"}


@asynccontextmanager
async def served(fake: FakeModyo, **server: Any) -> AsyncIterator[int]:
    settings = make_settings(server=server)
    app = create_app(
        settings,
        modyo_transport=mock_transport(FaultyModyo(fake), MODYO_URL),
        readiness=quiet_readiness(settings),
    )
    async with uvicorn_serving(app) as port:
        yield port


async def create(port: int, source: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, headers=auth) as client:
        response = await client.post(
            f"http://127.0.0.1:{port}/scim/Users",
            json=entra.user(f"fwd-{len(headers)}-{source}@contoso.com"),
            headers=headers,
        )
    assert response.status_code == 201, response.text
    assert response.json()["meta"]["location"] == response.headers["location"]
    return response


async def test_a_trusted_proxy_decides_the_public_scheme_and_host(
    fake: FakeModyo, log_output: LogOutput
) -> None:
    log_output.configure()
    async with served(fake) as port:
        response = await create(port, "127.0.0.1", PUBLIC | {"X-Forwarded-For": "203.0.113.9"})
    user_id = response.json()["id"]
    assert response.headers["location"] == f"https://scim.bank.example/scim/Users/{user_id}"
    [access] = [line for line in log_output.lines() if line["message"] == "request"]
    assert access["client"] == "203.0.113.9"  # the caller, not the proxy


async def test_forwarded_headers_from_an_untrusted_address_are_ignored(
    fake: FakeModyo, log_output: LogOutput
) -> None:
    log_output.configure()
    async with served(fake) as port:
        response = await create(port, "127.0.0.2", PUBLIC | {"X-Forwarded-For": "203.0.113.9"})
    user_id = response.json()["id"]
    assert response.headers["location"] == f"http://127.0.0.1:{port}/scim/Users/{user_id}"
    [access] = [line for line in log_output.lines() if line["message"] == "request"]
    assert access["client"] == "127.0.0.2"


async def test_the_trusted_list_is_the_setting(fake: FakeModyo) -> None:
    async with served(fake, forwarded_allow_ips="127.0.0.2, 10.0.0.0/8") as port:
        trusted = await create(port, "127.0.0.2", PUBLIC)
        untrusted = await create(port, "127.0.0.1", PUBLIC)
    assert trusted.headers["location"].startswith("https://scim.bank.example/scim/Users/")
    assert untrusted.headers["location"].startswith(f"http://127.0.0.1:{port}/scim/Users/")


async def test_public_url_wins_over_forwarded_headers(fake: FakeModyo) -> None:
    async with served(fake, public_url="https://scim.public.example") as port:
        response = await create(port, "127.0.0.1", PUBLIC)
    assert response.headers["location"].startswith("https://scim.public.example/scim/Users/")


async def test_the_nearest_proxy_s_host_counts_and_a_port_is_kept(fake: FakeModyo) -> None:
    headers = PUBLIC | {"X-Forwarded-Host": "attacker.example, scim.bank.example:8443"}
    async with served(fake) as port:
        response = await create(port, "127.0.0.1", headers)
    assert response.headers["location"].startswith("https://scim.bank.example:8443/scim/Users/")


@pytest.mark.parametrize(
    "value",
    ["evil.example/path", "evil.example?x=1", "user@evil.example", "a b", "host:99999",
     "host:0", "bad_host!", "", "-lead.example", "[::1", "[not:an:ip]", "x" * 300],
)  # fmt: skip
async def test_a_forwarded_host_that_is_not_host_port_is_ignored(
    fake: FakeModyo, value: str
) -> None:
    async with served(fake) as port:
        response = await create(port, "127.0.0.1", {"X-Forwarded-Host": value})
    assert response.headers["location"].startswith(f"http://127.0.0.1:{port}/scim/Users/")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"scim.bank.example", b"scim.bank.example"),
        (b"scim.bank.example:443", b"scim.bank.example:443"),
        (b"[2001:db8::1]:8443", b"[2001:db8::1]:8443"),
        (b"192.0.2.10", b"192.0.2.10"),
        (b"evil.example\r\nX-Injected: 1", None),
        (b"evil.example\n", None),
        (b"caf\xc3\xa9.example", None),
    ],
)
def test_forwarded_host_syntax(raw: bytes, expected: bytes | None) -> None:
    assert forwarded_host(raw) == expected


@example(host=b"bridge.test", scheme="https", path="/scim/Users")
@example(host=b"Bridge.Test:8443", scheme="https", path="/scim/Users")
@example(host=b"127.0.0.1:65535", scheme="http", path="/scim/Users")
@example(host=b"host:0", scheme="http", path="/scim/Users")
@example(host=b"host:08000", scheme="http", path="/scim/Users")
@example(host=b"host:", scheme="http", path="/scim/Users")
@example(host=b"[::1]:80", scheme="http", path="/scim/Users")
@given(
    host=st.from_regex(_HOST, fullmatch=True),
    scheme=st.sampled_from(["http", "https"]),
    path=st.sampled_from(["/scim/Users", "/scim/Users/7", "/scim/Groups"]),
)
def test_the_tenant_url_s_origin_is_starlette_s_for_every_host_the_edge_serves(
    host: bytes, scheme: str, path: str
) -> None:
    """``ScimContext.base_url`` spells ``scheme://host`` itself instead of building
    ``request.url``; Starlette's URL is the oracle, over every ``Host`` the edge lets in."""
    assume(host_header_problem([host], "1.1") is None)
    scope: dict[str, Any] = {
        "type": "http", "scheme": scheme, "path": path, "root_path": "", "query_string": b"",
        "server": ("127.0.0.1", 8000), "headers": [(b"host", host)],
    }  # fmt: skip
    request = Request(scope)
    assert _origin(request) == f"{request.url.scheme}://{request.url.netloc}"


@pytest.mark.parametrize("server", [("127.0.0.1", 80), ("127.0.0.1", 8000), None])
def test_without_a_host_header_the_origin_is_starlette_s(server: tuple[str, int] | None) -> None:
    """HTTP/1.0 may send no ``Host``: then Starlette's URL decides, from the server address."""
    scope: dict[str, Any] = {
        "type": "http", "scheme": "http", "path": "/scim/Users", "root_path": "",
        "query_string": b"", "server": server, "headers": [],
    }  # fmt: skip
    request = Request(scope)
    assert _origin(request) == f"{request.url.scheme}://{request.url.netloc}"
