"""The real ASGI app over httpx, in front of the project's own stateful fake Modyo."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from bridge.app import create_app
from bridge.config import Settings
from bridge.modyo.fake import FakeModyo, FaultyModyo, mock_transport
from bridge.modyo.http import ModyoHttp
from bridge.modyo.rest import RestUpstream
from bridge.modyo.retry import RetryPolicy
from tests import entra

TOKEN = "test-scim-token-0123456789"
SECOND_TOKEN = "rotated-scim-token-9876543210"
MODYO_URL = "http://modyo.test"
MODYO_TOKEN = "test-modyo-token-secret"
BASE = "http://bridge.test/scim"


def make_settings(**sections: dict[str, Any]) -> Settings:
    """Settings for tests: fast retries, both tokens accepted; sections override."""
    values: dict[str, Any] = {  # sections of plain values, validated by Settings
        "scim": {"tokens": [TOKEN, SECOND_TOKEN]},
        "modyo": {"base_url": MODYO_URL, "token": MODYO_TOKEN},
        "retry": {"backoff_initial_seconds": 0.001, "backoff_max_seconds": 0.01},
    }
    for name, overrides in sections.items():
        values.setdefault(name, {}).update(overrides)
    return Settings(**values)


@pytest.fixture
def fake() -> FakeModyo:
    return FakeModyo(token=MODYO_TOKEN)


@pytest.fixture
def modyo(fake: FakeModyo) -> FaultyModyo:
    return FaultyModyo(fake)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
async def scim(modyo: FaultyModyo, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with bridge_client(modyo, settings) as client:
        yield client


class bridge_client:
    """``async with bridge_client(modyo, settings) as client``: the app, started, behind httpx."""

    def __init__(
        self,
        modyo: FaultyModyo,
        settings: Settings,
        token: str = TOKEN,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """``sleep``, if given, is what the bridge's retry policy waits with (a test's clock)."""
        transport = mock_transport(modyo, MODYO_URL)
        if sleep is None:
            self.app = create_app(settings, modyo_transport=transport)
        else:
            retry = RetryPolicy(settings.retry, sleep=sleep)
            upstream = RestUpstream(ModyoHttp(settings.modyo, retry, transport))
            self.app = create_app(settings, upstream=upstream)
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
