"""What tests build the bridge with (imported by test modules; ``conftest.py`` keeps only
fixtures and hooks): the tokens and URLs of the fake world, settings, the app behind httpx
(:class:`bridge_client`), Entra's creates, the SCIM error check and the log capture."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

from bridge.config import Settings
from bridge.edge.app import create_app
from bridge.edge.readiness import Readiness
from bridge.journal import Journal
from bridge.logs import configure_logging
from bridge.modyo.fake import FaultyModyo, mock_transport
from bridge.modyo.http import ModyoHttp
from bridge.modyo.rest import RestUpstream
from bridge.modyo.retry import RetryPolicy
from bridge.modyo.scim import MEDIA_TYPE, ScimUpstream
from bridge.upstream import Upstream
from tests import entra

TOKEN = "test-scim-token-0123456789-abcdefghij"
SECOND_TOKEN = "rotated-scim-token-9876543210-zyxwvut"
TOKEN_NAME = "entra"
SECOND_TOKEN_NAME = "rotated"
MODYO_URL = "http://localhost:9"  # loopback: plain HTTP needs no modyo.allow_insecure
MODYO_TOKEN = "test-modyo-token-secret"
BASE = "http://bridge.test/scim"


PATIENT_REDIS = {"redis_timeout_seconds": 60, "redis_connect_timeout_seconds": 60}
"""Redis bounds for tests: a test's servers share one event loop, which a loaded machine may
keep from a Redis answer for seconds, and the shipped bounds (5 s, 2 s) would turn that into a
503 or a dropped journal event the test did not ask for. The tests of those bounds set their
own."""


def make_settings(**sections: dict[str, Any]) -> Settings:
    """Settings for tests: fast retries, both tokens accepted, URLs built from any host
    (tests name bridge.test, testserver, forwarded hosts: the allow-list has tests of its
    own); sections override."""
    values: dict[str, Any] = {  # sections of plain values, validated by Settings
        "server": {"allowed_hosts": ["*"]},
        "scim": {"tokens": {TOKEN_NAME: TOKEN, SECOND_TOKEN_NAME: SECOND_TOKEN}},
        "modyo": {"base_url": MODYO_URL, "token": MODYO_TOKEN},
        "retry": {"backoff_initial_seconds": 0.001, "backoff_max_seconds": 0.01},
        # the brake's defaults would hold the large histories other suites replay; its own
        # tests (test_brake.py, test_safety_rails.py) turn it on
        "safety": {"enabled": False},
        "idempotency": dict(PATIENT_REDIS),
    }
    for name, overrides in sections.items():
        values.setdefault(name, {}).update(overrides)
    return Settings(**values)


async def no_rounds() -> AsyncIterator[None]:
    """A readiness schedule with no rounds: they run when a test calls ``refresh()``."""
    return
    yield


def quiet_readiness(settings: Settings) -> Readiness:
    """Readiness that probes only when a test calls ``refresh()``: no background call to the
    fake Modyo, whose call counts and seeded faults the tests assert."""
    server = settings.server
    return Readiness(
        server.readiness_interval_seconds, server.readiness_max_age_seconds, schedule=no_rounds
    )


class bridge_client:
    """``async with bridge_client(modyo, settings) as client``: the app, started, behind httpx."""

    def __init__(
        self,
        modyo: FaultyModyo,
        settings: Settings,
        token: str = TOKEN,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        journal: Journal | None = None,
    ) -> None:
        """``sleep``, if given, is what the bridge's retry policy waits with (a test's clock);
        ``journal``, the journal the app feeds (a test reads its history)."""
        transport = transport or mock_transport(modyo, MODYO_URL)
        self.readiness = quiet_readiness(settings)
        upstream: Upstream | None = None
        if sleep is not None:
            retry = RetryPolicy(settings.retry, sleep=sleep)
            if settings.modyo.api == "scim":
                upstream = ScimUpstream(ModyoHttp(settings.modyo, retry, transport, MEDIA_TYPE))
            else:
                upstream = RestUpstream(ModyoHttp(settings.modyo, retry, transport))
        self.app = create_app(
            settings,
            upstream=upstream,
            modyo_transport=transport,
            readiness=self.readiness,
            journal=journal,
        )
        self.token = token

    async def __aenter__(self) -> httpx.AsyncClient:
        self._serving = app_client(self.app, self.token)
        return await self._serving.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._serving.__aexit__(exc_type, exc, traceback)


@asynccontextmanager
async def app_client(
    app: ASGIApp,
    token: str | None = TOKEN,
    base_url: str = BASE,
    headers: Mapping[str, str] | None = None,
    read_seconds: float = 30,
) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` started (its lifespan) behind :func:`asgi_client`: every in-process test's way
    to the bridge."""
    async with (
        LifespanManager(app) as manager,
        asgi_client(manager.app, token, base_url, headers, read_seconds) as client,
    ):
        yield client


def asgi_client(
    app: ASGIApp,
    token: str | None = TOKEN,
    base_url: str = BASE,
    headers: Mapping[str, str] | None = None,
    read_seconds: float = 30,
) -> httpx.AsyncClient:
    """An httpx client over ASGI to ``app`` as it is (started already, or an app without a
    lifespan) that sends ``token`` (none when None) and ``headers``."""
    sent = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=base_url,
        headers=sent | dict(headers or {}),
        timeout=read_seconds,
    )


async def create_user(scim: httpx.AsyncClient, user_name: str, **fields: Any) -> dict[str, Any]:
    response = await scim.post("/Users", json=entra.user(user_name, **fields))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_group(scim: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    response = await scim.post("/Groups", json=entra.group(name, **fields))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_scim_error(
    response: httpx.Response, status: int, scim_type: str | None = None
) -> dict[str, Any]:
    """An RFC 7644 §3.12 error: the status, the media type, the Error schema."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/scim+json"
    body: dict[str, Any] = response.json()
    assert body["schemas"] == [entra.ERROR_URN]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"]
    return body


class LogOutput:
    """What the bridge's configured log handler wrote (``configure_logging``, as ``serve``)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def configure(
        self, level: str = "info", fmt: str = "json", secrets: Iterable[str] = ()
    ) -> None:
        configure_logging(level, fmt, secrets, stream=self.stream)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """The JSON lines written so far."""
        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]
