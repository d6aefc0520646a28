"""The public scim2-tester conformance checks, against the bridge served over real HTTP, in
both upstream modes (issue 10 item 5): in front of the REST fake and in front of the fake of
Modyo's SCIM server. What it finds is what Modyo cannot hold, mode by mode (tests/backends.py
DIFFERENCES): the one email is primary (both), members carry their Modyo ``display`` (both),
and in scim mode an ``externalId`` cannot change after creation (a clear 400, not a silent
drop)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx2
import pytest
import uvicorn
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import CheckResult, Status, check_server

from bridge.edge.app import create_app
from bridge.modyo.fake import FakeModyo, FakeModyoScim, FaultyModyo, mock_transport
from tests.backends import APIS, Api, differs
from tests.conftest import MODYO_TOKEN, MODYO_URL, TOKEN, make_settings

IMMUTABLE_EXTERNAL_ID = "externalId only when it is created and cannot change it"


class _Server(uvicorn.Server):
    """A uvicorn server that says when it listens (an event, not a poll)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


@pytest.fixture(scope="module", params=APIS)
def api(request: pytest.FixtureRequest) -> Api:
    mode: Api = request.param
    return mode


@pytest.fixture(scope="module")
def bridge_url(api: Api) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fake = FakeModyo(token=MODYO_TOKEN) if api == "rest" else FakeModyoScim(token=MODYO_TOKEN)
    service = FaultyModyo(fake)
    settings = make_settings(modyo={"api": api})
    app = create_app(settings, modyo_transport=mock_transport(service, MODYO_URL))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, loop="asyncio")
    server = _Server(config)  # loop="asyncio": uvicorn < 0.36 set uvloop policy process-wide
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.listening.wait(timeout=20) and server.started, "the bridge did not start"
    yield f"http://127.0.0.1:{port}/scim"
    server.should_exit = True
    thread.join(timeout=10)


def _failures(results: list[CheckResult]) -> list[str]:
    bad = {Status.ERROR, Status.CRITICAL}
    return [f"{r.title} [{r.resource_type}]: {r.reason}" for r in results if r.status in bad]


def _run(bridge_url: str, resource_type: str) -> list[CheckResult]:
    with httpx2.Client(base_url=bridge_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        results = check_server(SyncSCIMClient(http), resource_types=[resource_type])
    ran = [r for r in results if r.status is not Status.SKIPPED]
    assert len(ran) > 20  # discovery and CRUD/PATCH checks really ran
    return results


@pytest.fixture(scope="module")
def group_failures(bridge_url: str) -> list[str]:
    return _failures(_run(bridge_url, "Group"))


def _objects_to_display(failure: str) -> bool:
    """scim2-tester expects ``members`` back exactly as sent; the bridge adds each member's
    ``display`` (its Modyo name, advertised readOnly), as the issue asks."""
    return "'members'" in failure and "display=None" in failure


def _objects_to_a_fixed_external_id(api: Api, failure: str) -> bool:
    """scim mode: Modyo's PATCH cannot change externalId [SCIM L93], so the bridge refuses
    the change (the difference "externalId patchable")."""
    return not differs("externalId patchable", api) and IMMUTABLE_EXTERNAL_ID in failure


def test_scim2_tester_on_users_only_objects_to_the_one_email_being_primary(
    bridge_url: str, api: Api
) -> None:
    """scim2-tester replaces ``emails`` with ``primary: false`` and expects it echoed; Modyo
    holds one email, so the bridge renders it ``primary: true`` (RFC 7643 §2.4 allows one
    primary value; Microsoft's create-user response shows it so), as the issue decides.
    Discovery and everything else pass. (scim2-tester draws ``primary`` at random: when it
    draws ``true`` there is no failure at all.)"""
    failures = _failures(_run(bridge_url, "User"))
    for failure in failures:
        if _objects_to_a_fixed_external_id(api, failure):
            continue
        assert "'emails'" in failure and "primary=False" in failure, failure
        assert "primary=True" in failure.split("Returned value:")[1], failure
    if not differs("externalId patchable", api):  # still a difference: keep the row true
        assert any(IMMUTABLE_EXTERNAL_ID in failure for failure in failures)


def test_scim2_tester_on_groups_objects_only_to_modyo_display_names(
    group_failures: list[str], api: Api
) -> None:
    unexpected = [
        failure
        for failure in group_failures
        if not _objects_to_display(failure) and not _objects_to_a_fixed_external_id(api, failure)
    ]
    assert unexpected == []


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="scim2-tester objects to the members' display the bridge adds (readOnly); "
    "when it stops objecting, this passes, fails as strict, and loses its mark",
)
def test_scim2_tester_finds_no_failure_for_groups(group_failures: list[str]) -> None:
    assert group_failures == []
