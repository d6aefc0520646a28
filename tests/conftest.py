"""Fixtures and hooks: the fake Modyo, the settings and the bridge client per upstream mode; the
helpers test modules import live in tests/harness.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
from hypothesis import settings as hypothesis_settings

from bridge.config import Settings
from bridge.modyo.fake import FakeModyo, FaultyModyo
from tests.harness import (
    MODYO_TOKEN,
    LogOutput,
    make_settings,
)

if TYPE_CHECKING:
    from tests.backends import Backend, LoggedScim

pytest_plugins = ["tests.redis_servers"]  # redis_server, redis_factory, redis_sentinel

# Hypothesis's default deadline (200 ms per example) is a wall-clock bound: on a loaded machine
# an example that is slow once fails the suite (seen: 277 ms for a 1 ms example), and the
# suite's waits are conditions, never times. Every property runs without one.
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")


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
