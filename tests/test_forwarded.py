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

from bridge.edge.app import create_app
from bridge.edge.forwarded import forwarded_host
from bridge.modyo.fake import FakeModyo, FaultyModyo, mock_transport
from tests import entra
from tests.conftest import MODYO_URL, TOKEN, LogOutput, make_settings, quiet_readiness
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
