"""Egress a bank can use, over real sockets with both transports: Modyo over TLS signed by a
private CA (``modyo.ca_file``), mTLS, an explicit proxy (``modyo.proxy_url``, CONNECT for
https://, forwarding for http://) and the standard HTTPS_PROXY/HTTP_PROXY/NO_PROXY variables;
and failures named for what they are (certificate, DNS, connection refused, proxy refusal),
the permanent ones answered at once instead of spending the retry budget."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from bridge.edge.app import create_app
from bridge.modyo.fake import FakeModyo, FakeModyoApp, FaultyModyo
from tests.harness import (
    MODYO_TOKEN,
    LogOutput,
    app_client,
    assert_scim_error,
    make_settings,
    quiet_readiness,
)
from tests.lookups import counted_lookups
from tests.servers import EgressProxy, free_port, tls_serving, uvicorn_serving

PROXY_USER, PROXY_PASSWORD = "egress-user", "proxy-pass@word-1234"

pytestmark = pytest.mark.parametrize("transport", ["aiohttp", "httpx"])


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(path)
    return path


@pytest.fixture
def fake() -> FakeModyo:
    return FakeModyo(token=MODYO_TOKEN)


@pytest.fixture
async def tls_modyo(fake: FakeModyo, ca: trustme.CA, tmp_path: Path) -> AsyncIterator[str]:
    """The fake Modyo over HTTPS, its certificate signed by a CA no public store holds."""
    async with tls_serving(FakeModyoApp(FaultyModyo(fake)), ca, tmp_path) as port:
        yield f"https://127.0.0.1:{port}"


@pytest.fixture
async def plain_modyo(fake: FakeModyo) -> AsyncIterator[str]:
    async with uvicorn_serving(FakeModyoApp(FaultyModyo(fake))) as port:
        yield f"http://127.0.0.1:{port}"


def bridge(transport: str, **modyo: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """The bridge (in-process, driven over ASGI) with its real Modyo transport."""
    settings = make_settings(modyo={"transport": transport, **modyo}, retry={"max_attempts": 3})
    return app_client(create_app(settings, readiness=quiet_readiness(settings)))


def access_line(log_output: LogOutput) -> dict[str, Any]:
    [line] = [line for line in log_output.lines() if line["message"] == "request"]
    return line


async def test_a_private_ca_is_trusted_once_given_as_ca_file(
    transport: str, tls_modyo: str, ca_file: Path, fake: FakeModyo
) -> None:
    async with bridge(transport, base_url=tls_modyo, ca_file=str(ca_file)) as scim:
        response = await scim.get("/Users")
    assert response.status_code == 200, response.text
    assert fake.calls == {"GET /team_members": 1}


async def test_a_certificate_that_does_not_verify_is_named_and_not_retried(
    transport: str, tls_modyo: str, fake: FakeModyo, log_output: LogOutput
) -> None:
    log_output.configure()
    async with bridge(transport, base_url=tls_modyo) as scim:
        response = await scim.get("/Users")
    detail = assert_scim_error(response, 502)["detail"]
    assert "TLS certificate of 127.0.0.1:" in detail and "does not verify" in detail
    assert "local issuer" in detail  # the verifier's own reason
    assert "modyo.ca_file" in detail
    assert access_line(log_output) | {"upstream_calls": 1, "upstream_retries": 0} == access_line(
        log_output
    )
    assert fake.calls == {}


async def test_a_client_certificate_is_presented_for_mtls(
    transport: str, fake: FakeModyo, ca: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    client_pem = tmp_path / "client.pem"
    ca.issue_cert("scim-bridge@bank.example").private_key_and_cert_chain_pem.write_to_path(
        client_pem
    )
    app = FakeModyoApp(FaultyModyo(fake))
    options = {"ssl_ca_certs": str(ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    async with tls_serving(app, ca, tmp_path, **options) as port:
        url = f"https://127.0.0.1:{port}"
        async with bridge(transport, base_url=url, ca_file=str(ca_file)) as scim:
            refused = await scim.get("/Users")
        async with bridge(
            transport, base_url=url, ca_file=str(ca_file), client_cert=str(client_pem)
        ) as scim:
            accepted = await scim.get("/Users")
    # TLS 1.3: the server refuses the missing certificate after the handshake, so the client
    # sees a dropped connection (retried, then 503), not a handshake failure
    assert refused.status_code == 503
    assert accepted.status_code == 200, accepted.text
    assert fake.calls == {"GET /team_members": 1}


async def test_a_refused_port_is_retried_and_then_named(
    transport: str, log_output: LogOutput
) -> None:
    log_output.configure()
    port = free_port()
    async with bridge(transport, base_url=f"http://127.0.0.1:{port}") as scim:
        response = await scim.get("/Users")
    detail = assert_scim_error(response, 503)["detail"]
    assert f"connection refused by 127.0.0.1:{port}" in detail
    line = access_line(log_output)
    assert (line["upstream_calls"], line["upstream_retries"]) == (3, 2)  # a restarting Modyo
    retries = [line for line in log_output.lines() if line["message"] == "retrying Modyo call"]
    assert {line["reason"] for line in retries} == {f"connection refused by 127.0.0.1:{port}"}


async def test_a_name_that_does_not_resolve_is_named_and_not_retried(
    transport: str, log_output: LogOutput
) -> None:
    log_output.configure()
    async with bridge(transport, base_url="https://scim-bridge-test.invalid") as scim:
        response = await scim.get("/Users")
    detail = assert_scim_error(response, 502)["detail"]
    assert "DNS lookup of scim-bridge-test.invalid failed" in detail
    assert "modyo.base_url" in detail
    assert access_line(log_output)["upstream_retries"] == 0


async def test_a_proxy_refusing_connections_is_named_as_the_proxy(
    transport: str, tls_modyo: str, ca_file: Path
) -> None:
    port = free_port()
    closed = f"http://{PROXY_USER}:{PROXY_PASSWORD.replace('@', '%40')}@127.0.0.1:{port}"
    async with bridge(
        transport, base_url=tls_modyo, ca_file=str(ca_file), proxy_url=closed
    ) as scim:
        response = await scim.get("/Users")
    detail = assert_scim_error(response, 503)["detail"]
    assert f"connection refused by the egress proxy 127.0.0.1:{port}" in detail
    assert PROXY_PASSWORD not in response.text


def _with_credentials(url: str) -> str:
    return url.replace("http://", f"http://{PROXY_USER}:{PROXY_PASSWORD.replace('@', '%40')}@")


async def test_https_goes_through_the_proxy_in_proxy_url_with_its_credentials(
    transport: str, tls_modyo: str, ca_file: Path, fake: FakeModyo, log_output: LogOutput
) -> None:
    log_output.configure(secrets=make_settings().secret_values())
    proxy = EgressProxy(credentials=f"{PROXY_USER}:{PROXY_PASSWORD}")
    async with proxy.running() as proxy_url:
        proxied = {"base_url": tls_modyo, "ca_file": str(ca_file)}
        async with bridge(transport, proxy_url=_with_credentials(proxy_url), **proxied) as scim:
            response = await scim.get("/Users")
    assert response.status_code == 200, response.text
    assert proxy.tunnels == [tls_modyo.removeprefix("https://")]
    assert proxy.refused == 0 and fake.calls == {"GET /team_members": 1}


async def test_a_proxy_refusing_the_credentials_is_named_without_showing_them(
    transport: str, tls_modyo: str, ca_file: Path, fake: FakeModyo, log_output: LogOutput
) -> None:
    proxy = EgressProxy(credentials=f"{PROXY_USER}:the-right-one")
    async with proxy.running() as proxy_url:
        with_password = _with_credentials(proxy_url)
        settings = make_settings(modyo={"proxy_url": with_password})
        log_output.configure(level="debug", secrets=settings.secret_values())
        proxied = {"base_url": tls_modyo, "ca_file": str(ca_file), "proxy_url": with_password}
        async with bridge(transport, **proxied) as scim:
            response = await scim.get("/Users")
    detail = assert_scim_error(response, 502)["detail"]
    assert "egress proxy refused the tunnel" in detail and "407" in detail
    assert proxy.refused == 1 and fake.calls == {}  # no retry: the same credentials again
    written = response.text + log_output.text
    assert PROXY_PASSWORD not in written and PROXY_PASSWORD.replace("@", "%40") not in written


async def test_http_is_forwarded_by_the_proxy_in_proxy_url(
    transport: str, plain_modyo: str, fake: FakeModyo
) -> None:
    proxy = EgressProxy(credentials=f"{PROXY_USER}:{PROXY_PASSWORD}")
    async with proxy.running() as proxy_url:
        proxied = {"base_url": plain_modyo, "proxy_url": _with_credentials(proxy_url)}
        async with bridge(transport, **proxied) as scim:
            response = await scim.get("/Users")
    assert response.status_code == 200, response.text
    assert [url.split("?")[0] for url in proxy.forwarded] == [
        f"{plain_modyo}/api/admin/team_members"
    ]
    assert fake.calls == {"GET /team_members": 1}


async def test_an_http_proxy_asking_for_credentials_is_named(
    transport: str, plain_modyo: str, fake: FakeModyo
) -> None:
    proxy = EgressProxy(credentials=f"{PROXY_USER}:{PROXY_PASSWORD}")
    async with (
        proxy.running() as proxy_url,
        bridge(transport, base_url=plain_modyo, proxy_url=proxy_url) as scim,
    ):
        response = await scim.get("/Users")
    detail = assert_scim_error(response, 502)["detail"]
    assert "egress proxy refused" in detail and "407" in detail
    assert proxy.refused == 1 and fake.calls == {}


async def test_the_standard_proxy_variables_are_honoured_when_proxy_url_is_unset(
    transport: str,
    tls_modyo: str,
    ca_file: Path,
    fake: FakeModyo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = EgressProxy()
    async with proxy.running() as proxy_url:
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        async with bridge(transport, base_url=tls_modyo, ca_file=str(ca_file)) as scim:
            assert (await scim.get("/Users")).status_code == 200
        assert proxy.tunnels == [tls_modyo.removeprefix("https://")]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with bridge(transport, base_url=tls_modyo, ca_file=str(ca_file)) as scim:
            assert (await scim.get("/Users")).status_code == 200
        assert len(proxy.tunnels) == 1  # the second went direct
    assert fake.calls == {"GET /team_members": 2}


async def test_http_proxy_variable_for_an_http_modyo(
    transport: str, plain_modyo: str, fake: FakeModyo, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = EgressProxy()
    async with proxy.running() as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        async with bridge(transport, base_url=plain_modyo) as scim:
            assert (await scim.get("/Users")).status_code == 200
    assert len(proxy.forwarded) == 1 and fake.calls == {"GET /team_members": 1}


async def test_serving_requests_reads_no_environment_and_no_file(
    transport: str, plain_modyo: str, fake: FakeModyo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy and TLS settings are resolved when the client is built; a request costs no
    look-up of the environment, no file opened and no job for the thread pool (aiohttp's
    ``trust_env`` made two per request: ``~/.netrc`` and a scan of the environment)."""
    async with bridge(transport, base_url=plain_modyo) as scim:
        assert (await scim.get("/Users")).status_code == 200  # connections and imports warm
        with counted_lookups(monkeypatch) as lookups:
            for _ in range(50):
                assert (await scim.get("/Users")).status_code == 200
    assert fake.calls == {"GET /team_members": 51}
    assert lookups.counts() == (0, 0, [])


async def test_each_call_carries_the_bridges_head_and_no_cookie_modyo_set(
    transport: str, fake: FakeModyo, log_output: LogOutput
) -> None:
    """Every Modyo call sends the bridge's own head (its token, the media type it accepts, its
    User-Agent, the request id of the access line) and nothing an earlier answer set: a
    ``Set-Cookie`` from Modyo is not sent back (each call stands on its bearer token)."""
    heads: list[dict[bytes, bytes]] = []
    inner = FakeModyoApp(FaultyModyo(fake))

    async def cookie_setting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        heads.append(dict(scope["headers"]))

        async def with_cookie(message: Any) -> None:
            if message["type"] == "http.response.start":
                cookie = (b"set-cookie", b"_modyo_session=s3ss10n; Path=/; HttpOnly")
                message["headers"] = [*message.get("headers", []), cookie]
            await send(message)

        await inner(scope, receive, with_cookie)

    log_output.configure()
    async with (
        uvicorn_serving(cookie_setting) as port,
        bridge(transport, base_url=f"http://127.0.0.1:{port}") as scim,
    ):
        for _ in range(2):
            assert (await scim.get("/Users")).status_code == 200
    ids = [line["request_id"] for line in log_output.lines() if line["message"] == "request"]
    assert len(heads) == 2 and len(ids) == 2
    for head, request_id in zip(heads, ids, strict=True):
        assert head[b"authorization"] == f"Bearer {MODYO_TOKEN}".encode()
        assert head[b"accept"] == b"application/json"
        assert head[b"user-agent"].startswith(b"scim-bridge/")
        assert head[b"x-request-id"] == request_id.encode()
        assert head[b"host"] == f"127.0.0.1:{port}".encode()
        assert b"cookie" not in head


async def test_a_compressed_answer_from_modyo_is_decoded(transport: str, fake: FakeModyo) -> None:
    """Modyo may compress what it sends (the bridge accepts gzip, as httpx offers it): the
    user read from a gzip-coded answer is the user Modyo holds."""
    import gzip

    inner = FakeModyoApp(FaultyModyo(fake))
    coded: list[bytes] = []

    async def compressing(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body = bytearray()

        async def gather(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            packed = gzip.compress(bytes(body))
            coded.append(packed)
            kept = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            headers = [
                *kept,
                (b"content-encoding", b"gzip"),
                (b"content-length", b"%d" % len(packed)),
            ]
            await send(start | {"headers": headers})
            await send({"type": "http.response.body", "body": packed})

        await inner(scope, receive, gather)

    [member] = fake.seed_members(1, prefix="zipped")
    async with (
        uvicorn_serving(compressing) as port,
        bridge(transport, base_url=f"http://127.0.0.1:{port}") as scim,
    ):
        response = await scim.get(f"/Users/{member}")
    assert response.status_code == 200, response.text
    assert response.json()["userName"] == "zipped0@example.com"
    assert coded  # the answer did travel compressed
