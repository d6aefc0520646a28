"""The bridge with ``modyo.api = "scim"``, in front of the fake of Modyo's SCIM server.

Fixtures for the tests of this mode only (import them into a test module), with the raw
``Recording`` of what is sent. Tests that hold in both modes use conftest's ``backend``
parametrization instead (tests/backends.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from bridge.config import Settings
from bridge.edge.app import create_app
from bridge.modyo.fake import FakeModyoScim, FaultyModyo, mock_transport
from tests.conftest import BASE, MODYO_TOKEN, MODYO_URL, TOKEN, make_settings


def scim_mode_settings(**sections: dict[str, Any]) -> Settings:
    modyo = {"api": "scim", **sections.pop("modyo", {})}
    return make_settings(modyo=modyo, **sections)


@pytest.fixture
def scim_fake() -> FakeModyoScim:
    return FakeModyoScim(token=MODYO_TOKEN)


@pytest.fixture
def scim_service(scim_fake: FakeModyoScim) -> FaultyModyo:
    return FaultyModyo(scim_fake)


@asynccontextmanager
async def serving(
    transport: httpx.AsyncBaseTransport, settings: Settings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The real ASGI app in scim mode, started, its Modyo calls sent to ``transport``."""
    app = create_app(settings or scim_mode_settings(), modyo_transport=transport)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),
            base_url=BASE,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        ) as client,
    ):
        yield client


@pytest.fixture
async def scim_bridge(scim_service: FaultyModyo) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(mock_transport(scim_service, MODYO_URL)) as client:
        yield client


@dataclass
class Sent:
    method: str
    path: str
    params: list[tuple[str, str]]
    raw_path: bytes
    body: Any
    headers: httpx.Headers

    @property
    def operations(self) -> list[dict[str, Any]]:
        """A PatchOp's operations (asserting it is one)."""
        assert self.body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]
        found: list[dict[str, Any]] = self.body["Operations"]
        return found


class Recording(httpx.AsyncBaseTransport):
    """Records every request sent to Modyo, then lets ``inner`` (the fake) answer it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[Sent] = []

    def writes(self) -> list[Sent]:
        return [sent for sent in self.sent if sent.method != "GET"]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        url = request.url
        self.sent.append(
            Sent(request.method, url.path, url.params.multi_items(), url.raw_path, body,
                 request.headers)
        )  # fmt: skip
        return await self.inner.handle_async_request(request)
