"""Never lose or duplicate a change: retries, deadlines, unknown outcomes, idempotency cache,
upstream pressure. Faults come from the fake Modyo's seeded injector."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import httpx
import pytest

from bridge.config import Settings
from bridge.deadline import deadline_in
from bridge.modyo.fake import FakeModyo, Faults, FaultyModyo, mock_transport
from bridge.modyo.fake.base import FakeResponse
from bridge.modyo.http import ModyoHttp, never_sent
from bridge.modyo.rest import RestUpstream
from bridge.modyo.retry import RetryPolicy
from bridge.upstream import Unavailable, UserField
from tests import entra
from tests.backends import Backend, differs
from tests.harness import MODYO_URL, assert_scim_error, create_group, make_settings
from tests.hooks import VirtualClock
from tests.servers import free_port
from tests.waits import until

pytestmark = pytest.mark.upstreams("rest", "scim")

ENTRA_RETRIES = 30


async def entra_send(
    client: httpx.AsyncClient, method: str, url: str, body: Any = None, **params: str
) -> httpx.Response:
    """What Entra does with a 5xx: send the same request again later (here: at once)."""
    for _ in range(ENTRA_RETRIES):
        response = await client.request(method, url, json=body, params=params or None)
        if response.status_code < 500:
            return response
        await asyncio.sleep(0)
    raise AssertionError(f"{method} {url} still failing: {response.text}")


async def entra_delete(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """Entra's DELETE, re-sent after a 5xx. The answer is 204, or 404 only after a 5xx: that
    earlier attempt was applied and its answer lost, and Entra counts the 404 as done."""
    failed = False
    for _ in range(ENTRA_RETRIES):
        response = await client.delete(url)
        if response.status_code < 500:
            assert response.status_code == 204 or (failed and response.status_code == 404), (
                f"DELETE {url}: {response.status_code} {response.text}"
            )
            return response
        failed = True
        await asyncio.sleep(0)
    raise AssertionError(f"DELETE {url} still failing: {response.text}")


async def bounded(concurrency: int, jobs: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


def snapshot(backend: Backend) -> tuple[dict[str, tuple[Any, ...]], dict[str, set[str]]]:
    """Modyo's state by natural keys: users by username, groups by name with member usernames
    (``users()`` and ``groups()`` assert that no two share one)."""
    users = {
        name: (user.email, user.given, user.family, user.external_id, user.active)
        for name, user in backend.users().items()
    }
    return users, backend.member_names()


# --------------------------------------------------------------------------- fault kinds


FAULT_KINDS = {
    "errors": Faults(error_rate=0.3, seed=1),
    "throttling": Faults(throttle_rate=0.3, retry_after_seconds=0, seed=2),
    "rate_limit": Faults(rate_limit_rps=10, seed=3),
    "lost_responses": Faults(lost_response_rate=0.3, seed=4),
    "latency": Faults(latency_ms=5, seed=5),
    "mixed": Faults(error_rate=0.15, throttle_rate=0.15, retry_after_seconds=0,
                    lost_response_rate=0.1, latency_ms=1, seed=6),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(FAULT_KINDS))
async def test_each_fault_kind_leaves_exactly_the_intended_state(
    backend: Backend, kind: str
) -> None:
    clock = VirtualClock()  # the rate limit refills, and retries wait, on the test's clock
    service = backend.faulty(FAULT_KINDS[kind], clock)
    async with backend.client(service, sleep=clock.sleep) as scim:
        ids = {}
        for n in range(12):
            response = await entra_send(scim, "POST", "/Users", entra.user(f"f{n}@contoso.com"))
            assert response.status_code == 201, response.text
            ids[n] = response.json()["id"]
        for n in range(0, 12, 3):
            patch = entra.patch(
                entra.op("Replace", "active", "False"),
                entra.op("Replace", "name.givenName", f"G{n}"),
            )
            assert (await entra_send(scim, "PATCH", f"/Users/{ids[n]}", patch)).status_code == 200
        group = await entra_send(scim, "POST", "/Groups", entra.group("Faulty"))
        assert group.status_code == 201
        gid = group.json()["id"]
        add = entra.patch(entra.op("Add", "members", entra.members(*ids.values())))
        assert (await entra_send(scim, "PATCH", f"/Groups/{gid}", add)).status_code == 204
        remove = entra.patch(entra.op("Remove", "members", entra.members(ids[0], ids[1])))
        assert (await entra_send(scim, "PATCH", f"/Groups/{gid}", remove)).status_code == 204
        await entra_delete(scim, f"/Users/{ids[2]}")
    users, groups = snapshot(backend)
    backend.assert_deleted(ids[2])
    assert sorted(users) == sorted(f"f{n}@contoso.com" for n in range(12) if n != 2)
    for n in range(12):
        if n != 2:
            assert users[f"f{n}@contoso.com"][2:] == ("User", f"ext-f{n}@contoso.com", n % 3 != 0)
            assert users[f"f{n}@contoso.com"][1] == (f"G{n}" if n % 3 == 0 else "Test")
    assert groups == {"Faulty": {f"f{n}@contoso.com" for n in range(3, 12)}}
    if kind != "latency":
        assert sum(service.injected.values()) > 0  # faults really happened


async def test_a_provisioning_history_under_mixed_faults_converges_exactly(
    backend: Backend,
) -> None:
    """500 users, 20 groups, memberships, updates, disables, deletes, in Entra's forms, against
    10% 5xx, 10% 429 and 5% lost responses: Modyo ends exactly in the intended state."""
    faults = Faults(
        error_rate=0.1, throttle_rate=0.1, retry_after_seconds=0, lost_response_rate=0.05, seed=7
    )
    clock = VirtualClock()
    service = backend.faulty(faults, clock)
    plan = random.Random(11)
    intended_users: dict[str, dict[str, Any]] = {}
    intended_groups: dict[str, set[str]] = {}
    ids: dict[str, str] = {}
    group_ids: dict[str, str] = {}
    async with backend.client(service, sleep=clock.sleep) as scim:

        async def provision_user(name: str) -> None:
            """Entra's cycle: match by userName, else create; a create that failed (5xx)
            is retried the same way, so one applied despite its 5xx is matched then."""
            for _ in range(ENTRA_RETRIES):
                query = await entra_send(scim, "GET", "/Users", filter=f'userName eq "{name}"')
                found = query.json()["Resources"]
                if found:
                    ids[name] = found[0]["id"]
                    return
                body = entra.user(name, given="Ana", family="Entra")
                response = await scim.post("/Users", json=body)
                if response.status_code == 201:
                    ids[name] = response.json()["id"]
                    return
                assert response.status_code >= 500, response.text
            raise AssertionError(f"{name} was never provisioned")

        names = [f"user{n:03}@contoso.com" for n in range(500)]
        for name in names:
            intended_users[name] = {"first": "Ana", "active": True}
        await bounded(16, [partial(provision_user, name) for name in names])

        async def provision_group(name: str) -> None:
            query = await entra_send(
                scim,
                "GET",
                "/Groups",
                filter=f'displayName eq "{name}"',
                excludedAttributes="members",
            )
            if query.json()["Resources"]:
                group_ids[name] = query.json()["Resources"][0]["id"]
                return
            response = await scim.post("/Groups", json=entra.group(name))
            if response.status_code >= 500:  # next cycle: match again, then create
                await provision_group(name)
                return
            assert response.status_code == 201, response.text
            group_ids[name] = response.json()["id"]

        groups = [f"Group {n:02}" for n in range(20)]
        await bounded(8, [partial(provision_group, name) for name in groups])

        adds: list[Callable[[], Awaitable[Any]]] = []
        for group in groups:
            members = plan.sample(names, 40)
            intended_groups[group] = set(members)
            for start in range(0, 40, 10):  # Entra batches several members in one operation
                batch = members[start : start + 10]
                body = entra.patch(
                    entra.op("Add", "members", entra.members(*(ids[m] for m in batch)))
                )
                adds.append(partial(entra_send, scim, "PATCH", f"/Groups/{group_ids[group]}", body))
        assert all(r.status_code == 204 for r in await bounded(16, adds))

        removes: list[Callable[[], Awaitable[Any]]] = []
        for number, group in enumerate(groups):
            leaving = plan.sample(sorted(intended_groups[group]), 5)
            intended_groups[group] -= set(leaving)
            for user in leaving:
                operation = (
                    entra.op("Remove", "members", entra.members(ids[user]))
                    if number % 2
                    else entra.op("remove", f'members[value eq "{ids[user]}"]', no_value=True)
                )
                body = entra.patch(operation)
                removes.append(
                    partial(entra_send, scim, "PATCH", f"/Groups/{group_ids[group]}", body)
                )
        assert all(r.status_code == 204 for r in await bounded(16, removes))

        updates: list[Callable[[], Awaitable[Any]]] = []
        for user in plan.sample(names, 100):
            intended_users[user]["first"] = f"New {user[:7]}"
            body = entra.patch(entra.op("replace", value={"name.givenName": f"New {user[:7]}"}))
            updates.append(partial(entra_send, scim, "PATCH", f"/Users/{ids[user]}", body))
        disabled = plan.sample(names, 60)
        for user in disabled:
            intended_users[user]["active"] = False
            body = entra.patch(entra.op("Replace", "active", "False"))
            updates.append(partial(entra_send, scim, "PATCH", f"/Users/{ids[user]}", body))
        assert all(r.status_code == 200 for r in await bounded(16, updates))
        reenabled = disabled[:10]
        for user in reenabled:
            intended_users[user]["active"] = True
        enable = entra.patch(entra.op("Replace", "active", "True"))
        enables = [
            partial(entra_send, scim, "PATCH", f"/Users/{ids[user]}", enable) for user in reenabled
        ]
        assert all(r.status_code == 200 for r in await bounded(16, enables))

        deleted = plan.sample(names, 30)
        for user in deleted:
            del intended_users[user]
            for group_members in intended_groups.values():
                group_members.discard(user)
        await bounded(16, [partial(entra_delete, scim, f"/Users/{ids[user]}") for user in deleted])

        renamed = {"Group 00": "Group 00 renamed", "Group 01": "Group 01 renamed"}
        for old, new in renamed.items():
            body = entra.patch(entra.op("Replace", "displayName", new))
            assert (
                await entra_send(scim, "PATCH", f"/Groups/{group_ids[old]}", body)
            ).status_code == 204
            intended_groups[new] = intended_groups.pop(old)
        await entra_delete(scim, f"/Groups/{group_ids['Group 19']}")
        del intended_groups["Group 19"]

    users, groups_now = snapshot(backend)
    assert sorted(users) == sorted(intended_users)  # no duplicate, no lost create or delete
    for name, wanted in intended_users.items():
        email, first, last, external_id, active = users[name]
        assert (email, first, last, external_id, active) == (
            name,
            wanted["first"],
            "Entra",
            f"ext-{name}",
            wanted["active"],
        ), name
    assert groups_now == intended_groups  # no stray or missing member
    assert min(service.injected[kind] for kind in ("error", "throttled")) > 50
    assert service.injected["lost_502"] + service.injected["lost_connection"] > 20


# --------------------------------------------------------------------------- concurrency


async def test_fifty_identical_concurrent_member_adds_make_one_write(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    group = await create_group(scim, "Crowd")
    user = (await scim.post("/Users", json=entra.user("one@contoso.com"))).json()
    backend.reset_calls()
    body = entra.patch(entra.op("Add", "members", entra.members(user["id"])))
    responses = await asyncio.gather(
        *(scim.patch(f"/Groups/{group['id']}", json=body) for _ in range(50))
    )
    assert {r.status_code for r in responses} == {204}
    assert backend.calls()["members.add"] == 1
    stored = backend.group(group["id"])
    assert stored is not None and stored.member_ids == {user["id"]}


async def test_concurrent_creates_of_one_user_name_with_different_bodies(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    """The second waits for the first, then gets 409: never two users, never a 500."""
    first = entra.user("race@contoso.com", given="First")
    second = entra.user("race@contoso.com", given="Second", email="race2@contoso.com")
    responses = await asyncio.gather(
        scim.post("/Users", json=first), scim.post("/Users", json=second)
    )
    assert sorted(r.status_code for r in responses) == [201, 409]
    assert_scim_error(next(r for r in responses if r.status_code == 409), 409, "uniqueness")
    assert len(backend.users()) == 1


# --------------------------------------------------------------------------- lost responses


async def test_a_create_whose_modyo_answer_is_lost_is_adopted_not_duplicated(
    backend: Backend,
) -> None:
    service = backend.faulty()
    service.lose_next(backend.route("user.create"))
    async with backend.client(service) as scim:
        response = await scim.post("/Users", json=entra.user("lost@contoso.com"))
    assert response.status_code == 201
    (held,) = backend.held_users()
    assert backend.calls()["user.create"] == 1 and response.json()["id"] == held.id


async def test_a_group_create_whose_answer_is_lost_is_adopted(backend: Backend) -> None:
    service = backend.faulty()
    service.lose_next(backend.route("group.create"))
    async with backend.client(service) as scim:
        response = await scim.post("/Groups", json=entra.group("Lost"))
    assert response.status_code == 201 and len(backend.held_groups()) == 1


async def test_a_create_lost_twice_is_still_one_user(backend: Backend) -> None:
    service = backend.faulty()
    service.lose_next(backend.route("user.create"))
    service.lose_next(backend.route("user.list"))  # the lookup after the lost create, too
    async with backend.client(service) as scim:
        response = await scim.post("/Users", json=entra.user("twice@contoso.com"))
    assert response.status_code == 201 and len(backend.users()) == 1


async def test_a_delete_whose_answer_is_lost_still_succeeds(backend: Backend) -> None:
    service = backend.faulty()
    async with backend.client(service) as scim:
        user = (await scim.post("/Users", json=entra.user("gone@contoso.com"))).json()
        service.lose_next(backend.route("user.delete"))
        response = await scim.delete(f"/Users/{user['id']}")
    assert response.status_code == 204 and backend.users() == {}
    backend.assert_deleted(user["id"])


async def test_disable_enable_disable_is_executed_three_times(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    """A stored answer is invalidated by any other write to the same resource."""
    user = (await scim.post("/Users", json=entra.user("flip@contoso.com"))).json()
    url = f"/Users/{user['id']}"
    for value in ("False", "True", "False"):
        await scim.patch(url, json=entra.patch(entra.op("Replace", "active", value)))
    assert backend.calls()["user.update"] == 3
    stored = backend.user(user["id"])
    assert stored is not None and stored.active is False


async def test_a_create_replayed_after_its_user_was_deleted_creates_again(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    body = entra.user("again@contoso.com")
    first = (await scim.post("/Users", json=body)).json()
    await scim.delete(f"/Users/{first['id']}")
    second = await scim.post("/Users", json=body)
    assert second.status_code == 201 and "x-idempotent-replay" not in second.headers
    assert second.json()["id"] != first["id"] and len(backend.users()) == 1


# --------------------------------------------------------------------------- retries and deadline


async def test_a_modyo_that_never_answers_yields_503_within_the_deadline(
    backend: Backend,
) -> None:
    service = backend.faulty(Faults(hang_rate=1.0))
    settings = backend.with_settings(scim={"request_deadline_seconds": 0.5})
    async with backend.client(service, settings) as scim:
        hanging = asyncio.create_task(scim.get("/Users/5"))
        await until(lambda: service.injected["hang"] == 1)  # the call hangs at Modyo
        other = await scim.get("/ServiceProviderConfig")  # the server keeps serving
        assert other.status_code == 200 and not hanging.done()
        response = await asyncio.wait_for(hanging, timeout=5)
    assert_scim_error(response, 503)
    assert int(response.headers["retry-after"]) >= 1


async def test_a_retry_after_beyond_the_cap_is_handed_to_entra(backend: Backend) -> None:
    service = backend.faulty(Faults(throttle_rate=1.0, retry_after_seconds=120))
    async with backend.client(service) as scim:
        response = await scim.get("/Users/5")
    assert_scim_error(response, 503)
    assert response.headers["retry-after"] == "120"
    assert service.injected["throttled"] == 1  # no retry before Modyo's Retry-After


@pytest.mark.parametrize("status", [500, 400, 403, 409])
async def test_errors_other_than_429_and_502_to_504_are_not_retried(
    backend: Backend, status: int
) -> None:
    """What each refusal means is the mode's (the difference "error mapping"): rest, a 500 or
    a 400 or 403 is a bad gateway and Modyo's 409 a refusal of the client's values; scim, a
    SCIM 400 is the client's values and a 409 a uniqueness conflict (§9.3 F7)."""
    answered, scim_type = differs("error mapping", backend.api)[status]
    backend.script("user.read", backend.failure(status, "no"))
    async with backend.client() as scim:
        response = await scim.get("/Users/5")
    assert_scim_error(response, answered, scim_type)
    assert backend.calls()["user.read"] == 1


@pytest.mark.upstreams("rest")  # the REST client itself, under the retry policy
async def test_retries_honour_retry_after_and_are_logged(
    fake: FakeModyo, caplog: pytest.LogCaptureFixture
) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    fake.script(
        "GET /team_members/:id",
        FakeResponse(429, {"errors": ["slow down"]}, {"Retry-After": "2"}),
        FakeResponse(503, {"errors": ["down"]}),
    )
    settings = make_settings()
    service = FaultyModyo(fake)
    created = fake.handle(
        "POST",
        "/api/admin/team_members",
        body=b'{"username":"r@x.com","email":"r@x.com"}',
        headers={"Authorization": f"Bearer {fake.token}"},
    ).body["id"]
    transport = mock_transport(service, MODYO_URL)
    client = RestUpstream(
        ModyoHttp(settings.modyo, RetryPolicy(settings.retry, sleep=record), transport)
    )
    async with client.connected():
        with caplog.at_level(logging.WARNING, logger="bridge.modyo"), deadline_in(10):
            user = await client.get_user(str(created))
    assert user.user_name == "r@x.com"
    assert waits[0] == 2.0 and len(waits) == 2
    retries = [r for r in caplog.records if r.getMessage() == "retrying Modyo call"]
    extras = [vars(record) for record in retries]  # what the log record carries as extras
    assert [(extra["call"], extra["attempt"]) for extra in extras] == [
        ("GET /team_members/:id", 1),
        ("GET /team_members/:id", 2),
    ]
    assert extras[0]["reason"].startswith("429") and extras[1]["reason"].startswith("503")


async def test_in_flight_modyo_calls_are_bounded(backend: Backend) -> None:
    service = backend.faulty(Faults(latency_ms=20))
    settings = backend.with_settings(modyo={"max_in_flight": 3})
    async with backend.client(service, settings) as scim:
        responses = await asyncio.gather(
            *(scim.get("/Users", params={"filter": f'userName eq "u{n}"'}) for n in range(20))
        )
    assert {r.status_code for r in responses} == {200}
    assert service.peak_in_flight == 3


# --------------------------------------------------------------------------- cache bounds


def test_settings_expose_the_reliability_knobs() -> None:
    settings: Settings = make_settings()
    assert settings.retry.max_attempts == 5 and settings.retry.retry_after_cap_seconds == 10
    assert settings.scim.request_deadline_seconds < 30  # well under Entra's own patience
    assert settings.idempotency.ttl_seconds == 600 and settings.modyo.max_in_flight == 32


async def test_a_refused_connection_is_known_never_sent_even_through_aiohttp(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """httpx-aiohttp turns every aiohttp connection error into ConnectTimeout; the bridge
    tells a refused connection (safe to re-send, even a create) from a dropped one."""
    closed = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(
        modyo={"base_url": closed, "transport": "aiohttp"}, retry={"max_attempts": 2}
    )
    client = RestUpstream(ModyoHttp(settings.modyo, RetryPolicy(settings.retry)))
    async with client.connected():
        with caplog.at_level(logging.WARNING, logger="bridge.modyo"), pytest.raises(Unavailable):
            await client.create_user(
                {UserField.USER_NAME: "x@contoso.com", UserField.EMAIL: "x@contoso.com"}
            )
    reasons = [vars(r)["reason"] for r in caplog.records if r.getMessage() == "retrying Modyo call"]
    assert reasons and all(
        reason.startswith("connection refused by 127.0.0.1:") for reason in reasons
    )


def test_only_a_connection_that_was_never_opened_counts_as_never_sent() -> None:
    import aiohttp

    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
        OSError(111, "refused"),
    )
    dropped = aiohttp.ServerDisconnectedError()
    assert never_sent(httpx.ConnectError("refused"))
    assert never_sent(httpx.ConnectTimeout("slow connect"))
    for cause, expected in ((refused, True), (dropped, False)):
        mapped = httpx.ConnectTimeout(str(cause))
        mapped.__cause__ = cause
        assert never_sent(mapped) is expected
    assert not never_sent(httpx.ReadTimeout("slow answer"))
    assert not never_sent(httpx.RemoteProtocolError("dropped"))
