"""TLS on the listeners (``server.tls_cert_file``/``tls_key_file``, ``internal.*``), over real
sockets on 127.0.0.1 with a private CA (trustme): a client trusting the CA speaks SCIM; TLS 1.1
is refused (a permissive server shows the client can speak it); a certificate replaced as
Kubernetes replaces a Secret's files is presented to the next connection without a restart,
and one that does not load leaves the previous one in service; a handshake is counted among
``max_connections`` and bounded by the header timeout (docs/operator/listeners.md)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
import trustme

from bridge.config import InternalSettings
from bridge.config_loading import ConfigError, load_settings
from bridge.edge.app import internal_app
from bridge.modyo.fake import FaultyModyo
from bridge.run.server import Server, internal_config
from tests import entra
from tests.harness import TOKEN, make_settings
from tests.processes import fake_modyo, healthcheck, serve_env
from tests.servers import free_port
from tests.test_server import SAFETY_SECONDS, bridge
from tests.waits import wait_until

GUARD = 400  # new connections tried before a wait for the replaced certificate fails
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n"


class SecretVolume:
    """A directory as Kubernetes mounts a Secret: ``tls.crt`` and ``tls.key`` are symlinks
    into ``..data``, itself a symlink to a timestamped directory, swapped in one rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions = 0
        for name in ("tls.crt", "tls.key"):
            (root / name).symlink_to(f"..data/{name}")

    def publish(self, cert: bytes, key: bytes) -> None:
        self.versions += 1
        version = self.root / f"..v{self.versions}"
        version.mkdir()
        (version / "tls.crt").write_bytes(cert)
        (version / "tls.key").write_bytes(key)
        staged = self.root / "..data_tmp"
        staged.symlink_to(version.name)
        os.replace(staged, self.root / "..data")

    @property
    def cert(self) -> Path:
        return self.root / "tls.crt"

    @property
    def key(self) -> Path:
        return self.root / "tls.key"


def _issued(ca: trustme.CA) -> tuple[bytes, bytes, bytes]:
    """A certificate for 127.0.0.1 from ``ca``: its chain and key (PEM) and its DER."""
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    return chain, leaf.private_key_pem.bytes(), der


def _client(ca: trustme.CA, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    if version is not None:
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = context.maximum_version = version
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # what OpenSSL 3 needs for TLS 1.1
    return context


async def _handshake(port: int, context: ssl.SSLContext) -> tuple[str, bytes]:
    """A TLS connection's protocol version and the server's certificate (DER), after one
    GET /healthz answered 200 on it."""
    async with asyncio.timeout(SAFETY_SECONDS):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
        )
        try:
            tls: ssl.SSLObject = writer.get_extra_info("ssl_object")
            writer.write(HEALTHZ)
            await writer.drain()
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            return str(tls.version()), bytes(tls.getpeercert(binary_form=True) or b"")
        finally:
            writer.close()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def volume(tmp_path: Path, ca: trustme.CA) -> SecretVolume:
    volume = SecretVolume(tmp_path)
    chain, key, _ = _issued(ca)
    volume.publish(chain, key)
    return volume


@asynccontextmanager
async def tls_bridge(
    modyo: FaultyModyo, volume: SecretVolume, **server: object
) -> AsyncIterator[int]:
    tls = {"tls_cert_file": str(volume.cert), "tls_key_file": str(volume.key)}
    async with bridge(modyo, **tls, **server) as served:
        yield served.port


async def test_a_client_trusting_the_ca_speaks_scim_over_tls(
    modyo: FaultyModyo, volume: SecretVolume, ca: trustme.CA
) -> None:
    async with tls_bridge(modyo, volume) as port:
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{port}/scim",
            headers={"Authorization": f"Bearer {TOKEN}"},
            verify=_client(ca),
            trust_env=False,
        ) as scim:
            created = await scim.post("/Users", json=entra.user("tls@contoso.com"))
            assert created.status_code == 201, created.text
            assert created.headers["location"].startswith(f"https://127.0.0.1:{port}/scim/")
        with pytest.raises(ssl.SSLCertVerificationError):  # a client not trusting the CA
            await _handshake(port, _client(trustme.CA()))
        plain = await asyncio.open_connection("127.0.0.1", port)  # HTTP to the TLS port
        plain[1].write(HEALTHZ)
        async with asyncio.timeout(SAFETY_SECONDS):
            assert await plain[0].read() == b""  # closed unanswered: no plaintext served
        plain[1].close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_1_1_is_refused_and_1_2_and_1_3_are_served(
    modyo: FaultyModyo, volume: SecretVolume, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.minimum_version = ssl.TLSVersion.TLSv1_1
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    permissive.load_cert_chain(volume.cert, volume.key)

    async def healthy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    control = await asyncio.start_server(healthy, "127.0.0.1", 0, ssl=permissive)
    async with control:
        control_port = control.sockets[0].getsockname()[1]
        assert (await _handshake(control_port, _client(ca, ssl.TLSVersion.TLSv1_1)))[0] == "TLSv1.1"
    async with tls_bridge(modyo, volume) as port:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await _handshake(port, _client(ca, ssl.TLSVersion.TLSv1_1))
        assert "TLS handshake failed (UNSUPPORTED_PROTOCOL)" in caplog.text
        for version, name in (
            (ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
            (ssl.TLSVersion.TLSv1_3, "TLSv1.3"),
        ):
            assert (await _handshake(port, _client(ca, version)))[0] == name


async def _until_presented(port: int, context: ssl.SSLContext, der: bytes) -> int:
    """New connections until one presents ``der``; how many it took (GUARD: fail)."""
    for attempt in range(1, GUARD + 1):
        if (await _handshake(port, context))[1] == der:
            return attempt
    raise AssertionError(f"the replaced certificate was not presented in {GUARD} connections")


async def test_a_replaced_certificate_is_presented_without_a_restart(
    modyo: FaultyModyo, volume: SecretVolume, ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(ca)
    async with tls_bridge(modyo, volume) as port:
        first = (await _handshake(port, client))[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="127.0.0.1"
        )  # kept open across the renewal
        chain, key, renewed = _issued(ca)
        assert renewed != first
        volume.publish(chain, key)  # as cert-manager renews the Secret
        assert await _until_presented(port, client, renewed) == 1

        stale_chain, _, stale = _issued(ca)  # a certificate without its key
        volume.publish(stale_chain, key)
        assert (await _handshake(port, client))[1] == renewed  # the last good one serves
        assert "does not load" in caplog.text
        chain, key, fixed = _issued(ca)
        volume.publish(chain, key)
        assert await _until_presented(port, client, fixed) == 1

        writer.write(HEALTHZ)  # the connection opened before the renewals still serves
        await writer.drain()
        async with asyncio.timeout(SAFETY_SECONDS):
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            assert writer.get_extra_info("ssl_object").getpeercert(binary_form=True) == first
        writer.close()
    assert stale != renewed


async def test_handshakes_count_among_max_connections_and_end_at_the_header_timeout(
    modyo: FaultyModyo, volume: SecretVolume, ca: trustme.CA
) -> None:
    """Silent TCP connections to a TLS listener hold a slot each, until the header timeout
    closes them: uvicorn's own TLS would hold them uncounted for 60 s."""
    async with tls_bridge(modyo, volume, max_connections=2, header_timeout_seconds=0.5) as port:
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await _handshake(port, _client(ca))  # a third: closed without a handshake
        async with asyncio.timeout(SAFETY_SECONDS):
            for reader, _ in silent:  # closed by the server, unanswered
                assert await reader.read() == b""
        assert (await _handshake(port, _client(ca)))[0] in ("TLSv1.2", "TLSv1.3")
        for _, writer in silent:
            writer.close()


@contextmanager
def _bound() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


async def test_the_internal_listener_takes_tls_too(volume: SecretVolume, ca: trustme.CA) -> None:
    settings = make_settings()
    internal = InternalSettings(port=9, tls_cert_file=volume.cert, tls_key_file=volume.key)
    config = internal_config(internal_app(settings), internal, settings.server)
    config.load()
    server = Server(config)
    server.lifespan = config.lifespan_class(config)
    with _bound() as sock:
        await server.startup(sockets=[sock])
        try:
            port = sock.getsockname()[1]
            async with httpx.AsyncClient(verify=_client(ca), trust_env=False) as client:
                metrics = await client.get(f"https://127.0.0.1:{port}/metrics")
            assert metrics.status_code == 200 and "scim_bridge_requests_total" in metrics.text
        finally:
            await server.shutdown(sockets=[sock])


def test_a_listener_s_certificate_and_key_must_load(volume: SecretVolume, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(trustme.CA().issue_cert("127.0.0.1").private_key_pem.bytes())
    combined = tmp_path / "combined.pem"
    combined.write_bytes(volume.cert.read_bytes() + volume.key.read_bytes())
    cases = [
        ({"tls_key_file": volume.key}, "server.tls_key_file is set without server.tls_cert_file"),
        (
            {"tls_cert_file": volume.cert, "tls_key_file": other},
            "server.tls_cert_file (with server.tls_key_file) is not a PEM certificate chain",
        ),
        ({"tls_cert_file": combined}, None),  # the key in the chain's file
    ]
    for server, problem in cases:
        try:
            load_settings(
                None, server=server, scim={"tokens": {"entra": TOKEN}},
                modyo={"base_url": "https://m.example", "token": "t"},
            )  # fmt: skip
        except ConfigError as refused:
            assert problem is not None and problem in refused.problems[0], refused.problems
        else:
            assert problem is None, problem


def test_the_image_healthcheck_speaks_tls_to_a_tls_listener(volume: SecretVolume) -> None:
    """``scim-bridge healthcheck`` (the Dockerfile's HEALTHCHECK) follows serve to https."""
    with fake_modyo() as modyo_url:
        port = free_port()
        env = serve_env(modyo_url, port=port) | {
            "BRIDGE_SERVER__TLS_CERT_FILE": str(volume.cert),
            "BRIDGE_SERVER__TLS_KEY_FILE": str(volume.key),
        }
        with subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        ) as process:
            try:

                def served_or_exited() -> subprocess.CompletedProcess[str] | None:
                    result = healthcheck(process.pid, env)
                    return result if result.returncode == 0 or process.poll() is not None else None

                result = wait_until(served_or_exited, "serve answering the healthcheck")
            finally:
                process.terminate()  # server.shutdown_timeout_seconds bounds the rest
                try:
                    process.wait(timeout=SAFETY_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    pytest.fail(f"serve still running {SAFETY_SECONDS} s after SIGTERM")
    assert result.stdout == f"healthy: GET https://127.0.0.1:{port}/healthz answered 200\n"
