"""The real ASGI app over httpx, in front of the project's own stateful fake Modyo."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from bridge.config import Settings
from bridge.edge.app import create_app
from bridge.edge.readiness import Readiness
from bridge.logs import configure_logging
from bridge.modyo.fake import FakeModyo, FaultyModyo, mock_transport
from bridge.modyo.http import ModyoHttp
from bridge.modyo.rest import RestUpstream
from bridge.modyo.retry import RetryPolicy
from bridge.modyo.scim import MEDIA_TYPE, ScimUpstream
from bridge.upstream import Upstream
from tests import entra

if TYPE_CHECKING:
    from tests.backends import Backend, LoggedScim

TOKEN = "test-scim-token-0123456789-abcdefghij"
SECOND_TOKEN = "rotated-scim-token-9876543210-zyxwvut"
TOKEN_NAME = "entra"
SECOND_TOKEN_NAME = "rotated"
MODYO_URL = "http://localhost:9"  # loopback: plain HTTP needs no modyo.allow_insecure
MODYO_TOKEN = "test-modyo-token-secret"
BASE = "http://bridge.test/scim"

pytest_plugins = ["tests.redis_servers"]  # redis_server, redis_factory, redis_sentinel


def make_settings(**sections: dict[str, Any]) -> Settings:
    """Settings for tests: fast retries, both tokens accepted, URLs built from any host
    (tests name bridge.test, testserver, forwarded hosts: the allow-list has tests of its
    own); sections override."""
    values: dict[str, Any] = {  # sections of plain values, validated by Settings
        "server": {"allowed_hosts": ["*"]},
        "scim": {"tokens": {TOKEN_NAME: TOKEN, SECOND_TOKEN_NAME: SECOND_TOKEN}},
        "modyo": {"base_url": MODYO_URL, "token": MODYO_TOKEN},
        "retry": {"backoff_initial_seconds": 0.001, "backoff_max_seconds": 0.01},
    }
    for name, overrides in sections.items():
        values.setdefault(name, {}).update(overrides)
    return Settings(**values)


@pytest.fixture(autouse=True)
def _no_proxy_from_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge honours HTTP(S)_PROXY and NO_PROXY: the machine running the tests must not
    route their loopback servers through its own proxy."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def fake() -> FakeModyo:
    return FakeModyo(token=MODYO_TOKEN)


@pytest.fixture
def modyo(fake: FakeModyo) -> FaultyModyo:
    return FaultyModyo(fake)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "upstreams(*apis): the upstream modes (rest, scim) the test's `backend` and `scim` "
        "fixtures run in (tests/backends.py); unmarked: rest only",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``backend`` (and so ``scim``) runs once per mode its closest ``upstreams`` marker
    names: a module marks both, a REST-contract test in it marks ``rest`` alone. A module
    that builds one app per mode and shares it between tests (tests/test_fuzz.py) takes
    ``api`` instead: the mode, a module-scoped parameter."""
    marker = metafunc.definition.get_closest_marker("upstreams")
    apis = tuple(marker.args) if marker else ("rest",)
    if "backend" in metafunc.fixturenames:
        if apis != ("rest",):
            metafunc.parametrize("backend", apis, indirect=True, ids=apis)
    elif "api" in metafunc.fixturenames and marker is not None:
        metafunc.parametrize("api", apis, ids=apis, scope="module")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    """The upstream mode under test: conftest's REST ``fake``/``modyo``/``settings``, or the
    SCIM fake with those ``settings`` in scim mode (tests/backends.py)."""
    from tests.backends import RestBackend, ScimBackend

    api = getattr(request, "param", "rest")
    if api == "rest":
        return RestBackend(
            request.getfixturevalue("fake"),
            request.getfixturevalue("modyo"),
            request.getfixturevalue("settings"),
        )
    direct = {"fake", "modyo"} & set(request.node.fixturenames)
    if direct:  # a REST fake beside a scim-mode bridge would be asserted on by mistake
        raise pytest.UsageError(
            f"{request.node.nodeid} uses {sorted(direct)} (REST only): mark it "
            "@pytest.mark.upstreams('rest') or use the backend"
        )
    return ScimBackend(request.getfixturevalue("settings"), request.getfixturevalue("logged_scim"))


@pytest.fixture
def logged_scim() -> LoggedScim:
    """The SCIM fake behind a scim-mode ``backend`` (a module overrides it, as ``fake``)."""
    from tests.backends import LoggedScim

    return LoggedScim()


@pytest.fixture
async def scim(backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    async with backend.client() as client:
        yield client


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
    ) -> None:
        """``sleep``, if given, is what the bridge's retry policy waits with (a test's clock)."""
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
            settings, upstream=upstream, modyo_transport=transport, readiness=self.readiness
        )
        self.token = token

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = LifespanManager(self.app)
        manager = await self._lifespan.__aenter__()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),
            base_url=BASE,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._client.aclose()
        await self._lifespan.__aexit__(exc_type, exc, traceback)


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


async def until(condition: Callable[[], object], turns: int = 100_000) -> None:
    """Let the event loop run until ``condition()`` holds: synchronises on state the code
    under test changes (no clock involved); fails if it never does."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{condition} never held")


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


@pytest.fixture
def log_output() -> Iterator[LogOutput]:
    """The root logger configured as ``serve`` does, writing to memory; restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        yield LogOutput()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
