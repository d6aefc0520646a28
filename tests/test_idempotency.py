"""The idempotency rule (bridge/edge/idempotency.py): RFC 7644's MUSTs win over replay.
A twin whose answer reached its client gets what a fresh request gets (409 for a create,
§3.3; 404 for a delete, §3.6); an answer that never reached its client is replayed to the
first identical retry; concurrent twins still make one Modyo write."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp, Message

from bridge.edge.app import create_app
from bridge.modyo.fake import FaultyModyo, mock_transport
from bridge.store.answers import Flight, LeadResult, MemoryStore, StoredAnswer
from tests import entra
from tests.backends import Backend, membership_lookup
from tests.harness import MODYO_URL, TOKEN, asgi_client, assert_scim_error
from tests.redis_servers import RedisServer
from tests.servers import logged, uvicorn_serving
from tests.waits import HANG_GUARD_SECONDS, within

pytestmark = pytest.mark.upstreams("rest", "scim")


@dataclass
class Rig:
    app: ASGIApp
    scim: httpx.AsyncClient
    backend: Backend
    service: FaultyModyo


DEADLINE = {"request_deadline_seconds": 2 * HANG_GUARD_SECONDS}
"""A request deadline a loaded machine does not reach: a 503 would leave the waits below
waiting for twins that never come, so the hang guard fails first, naming what it awaited."""


async def _rig(backend: Backend, **sections: dict[str, Any]) -> AsyncIterator[Rig]:
    service = backend.modyo
    settings = backend.with_settings(scim=DEADLINE, **sections)
    app = create_app(settings, modyo_transport=mock_transport(service, MODYO_URL))
    async with (
        LifespanManager(app) as manager,
        asgi_client(manager.app) as scim,
    ):
        yield Rig(manager.app, scim, backend, service)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Every behaviour holds with both stores: this process's memory, and a real
    redis-server (started for the test, empty)."""
    if request.param == "memory":
        return {}
    server: RedisServer = request.getfixturevalue("redis_server")
    return {"backend": "redis", "redis_url": server.url}


@pytest.fixture
async def rig(backend: Backend, store: dict[str, Any]) -> AsyncIterator[Rig]:
    async for built in _rig(backend, idempotency=store):
        yield built


async def vanishing(app: ASGIApp, method: str, path: str, body: Any = None) -> list[Message]:
    """A request whose client disconnects right after sending it (what an Entra request that
    timed out looks like to the server): the messages the app still tried to send."""
    content = b"" if body is None else json.dumps(body).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": f"/scim{path}", "raw_path": f"/scim{path}".encode(),
        "root_path": "", "query_string": b"", "server": ("bridge.test", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(b"host", b"bridge.test"), (b"authorization", f"Bearer {TOKEN}".encode()),
                    (b"content-type", b"application/scim+json"),
                    (b"content-length", str(len(content)).encode())],
    }  # fmt: skip
    messages = [{"type": "http.request", "body": content, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


WAITING = "waiting for an identical request in flight"
GONE = "the client left before its answer"
KEPT = "answer kept for a retry: its client left before it"


# --------------------------------------------------------------------------- delivered twins


async def test_a_repeated_identical_create_is_409_uniqueness(rig: Rig) -> None:
    """Microsoft's reference collection: a second "Post emp3" must be 409 with a detail."""
    body = entra.user("emp3@contoso.com")
    assert (await rig.scim.post("/Users", json=body)).status_code == 201
    again = await rig.scim.post("/Users", json=dict(reversed(list(body.items()))))
    error = assert_scim_error(again, 409, "uniqueness")
    assert "userName" in error["detail"] and "x-idempotent-replay" not in again.headers
    assert len(rig.backend.users()) == 1


async def test_a_repeated_delete_is_404(rig: Rig) -> None:
    user = (await rig.scim.post("/Users", json=entra.user("gone@contoso.com"))).json()
    assert (await rig.scim.delete(f"/Users/{user['id']}")).status_code == 204
    assert_scim_error(await rig.scim.delete(f"/Users/{user['id']}"), 404)
    group = (await rig.scim.post("/Groups", json=entra.group("Gone"))).json()
    assert (await rig.scim.delete(f"/Groups/{group['id']}")).status_code == 204
    assert_scim_error(await rig.scim.delete(f"/Groups/{group['id']}"), 404)


async def test_a_repeated_group_create_is_409(rig: Rig) -> None:
    assert (await rig.scim.post("/Groups", json=entra.group("Twins"))).status_code == 201
    assert_scim_error(await rig.scim.post("/Groups", json=entra.group("Twins")), 409, "uniqueness")
    assert len(rig.backend.held_groups()) == 1


async def test_without_the_cache_a_repeated_create_is_409_too(backend: Backend) -> None:
    async for rig in _rig(backend, idempotency={"enabled": False}):
        assert (await rig.scim.post("/Users", json=entra.user("n@contoso.com"))).status_code == 201
        again = await rig.scim.post("/Users", json=entra.user("n@contoso.com"))
        assert_scim_error(again, 409, "uniqueness")
    assert len(backend.users()) == 1


# --------------------------------------------------------------------------- lost answers


async def test_a_create_whose_client_vanished_is_replayed_to_its_retry(rig: Rig) -> None:
    body = entra.user("retry@contoso.com")
    assert await vanishing(rig.app, "POST", "/Users", body) == []  # nothing reached anyone
    (held,) = rig.backend.held_users()
    retry = await rig.scim.post("/Users", json=body)
    assert retry.status_code == 201 and retry.headers["x-idempotent-replay"] == "true"
    assert retry.json()["id"] == held.id
    assert retry.headers["location"].endswith(f"/Users/{retry.json()['id']}")
    assert rig.backend.calls()["user.create"] == 1
    # the replay reached its client: the next twin is a fresh create, hence 409
    assert_scim_error(await rig.scim.post("/Users", json=body), 409, "uniqueness")


async def test_a_delete_whose_client_vanished_is_replayed_to_its_retry(rig: Rig) -> None:
    user = (await rig.scim.post("/Users", json=entra.user("d@contoso.com"))).json()
    assert await vanishing(rig.app, "DELETE", f"/Users/{user['id']}") == []
    rig.backend.assert_deleted(user["id"])
    assert rig.backend.users() == {}
    retry = await rig.scim.delete(f"/Users/{user['id']}")
    assert retry.status_code == 204 and retry.headers["x-idempotent-replay"] == "true"
    assert_scim_error(await rig.scim.delete(f"/Users/{user['id']}"), 404)


async def test_a_replay_whose_client_vanishes_too_is_kept_for_the_next_retry(rig: Rig) -> None:
    body = entra.user("twice@contoso.com")
    await vanishing(rig.app, "POST", "/Users", body)
    await vanishing(rig.app, "POST", "/Users", body)  # the retry is lost as well
    retry = await rig.scim.post("/Users", json=body)
    assert retry.status_code == 201 and retry.headers["x-idempotent-replay"] == "true"
    assert rig.backend.calls()["user.create"] == 1


async def test_another_write_to_the_resource_drops_a_kept_answer(rig: Rig) -> None:
    """A kept answer describes a state that a later write changed: the retry is fresh."""
    body = entra.user("moved@contoso.com")
    await vanishing(rig.app, "POST", "/Users", body)
    (member,) = rig.backend.held_users()
    patch = entra.patch(entra.op("Replace", "active", "False"))
    assert (await rig.scim.patch(f"/Users/{member.id}", json=patch)).status_code == 200
    assert_scim_error(await rig.scim.post("/Users", json=body), 409, "uniqueness")


async def test_errors_are_never_kept(rig: Rig) -> None:
    group = (await rig.scim.post("/Groups", json=entra.group("Later"))).json()
    body = entra.patch(entra.op("Add", "members", entra.members("999")))
    assert await vanishing(rig.app, "PATCH", f"/Groups/{group['id']}", body) == []
    rig.backend.reset_calls()
    assert (await rig.scim.patch(f"/Groups/{group['id']}", json=body)).status_code == 400
    calls = rig.backend.calls()
    for lookup, count in membership_lookup(rig.backend.api, 1).items():
        assert calls[lookup] == count  # executed again, not replayed


async def test_an_evicted_kept_answer_is_executed_again(backend: Backend) -> None:
    async for rig in _rig(backend, idempotency={"max_entries": 2}):
        bodies = [entra.user(f"ev{n}@contoso.com") for n in range(3)]
        for body in bodies:
            await vanishing(rig.app, "POST", "/Users", body)
        replay = await rig.scim.post("/Users", json=bodies[2])
        assert replay.status_code == 201 and replay.headers["x-idempotent-replay"] == "true"
        evicted = await rig.scim.post("/Users", json=bodies[0])  # the oldest was dropped
        assert_scim_error(evicted, 409, "uniqueness")
    assert backend.calls()["user.create"] == 4 and len(backend.users()) == 3


# --------------------------------------------------------------------------- concurrent twins


async def _together(
    rig: Rig, operation: str, requests: Sequence[Awaitable[httpx.Response]]
) -> list[httpx.Response]:
    """Run identical ``requests`` so that they are truly concurrent: the first one's Modyo
    call (the logical ``operation``) is held until every other one waits for it (whatever
    the store's latency), then released."""
    hold = rig.service.hold_next(rig.backend.route(operation))
    with logged("bridge.idempotency", WAITING, times=len(requests) - 1) as all_waiting:
        tasks = [asyncio.ensure_future(request) for request in requests]
        await within(f"{operation} call reaching Modyo", hold.arrived.wait())
        await within(f"{len(requests) - 1} twins waiting", all_waiting.wait())
    hold.release()
    return list(await within("answers", asyncio.gather(*tasks)))


async def test_fifty_identical_concurrent_creates_make_one_user_and_49_conflicts(
    rig: Rig,
) -> None:
    body = entra.user("twin@contoso.com")
    posts = [rig.scim.post("/Users", json=body) for _ in range(50)]
    responses = await _together(rig, "user.create", posts)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 49
    for conflict in (r for r in responses if r.status_code == 409):
        assert_scim_error(conflict, 409, "uniqueness")
    assert len(rig.backend.users()) == 1 and rig.backend.calls()["user.create"] == 1


async def test_fifty_identical_concurrent_group_creates_make_one_group(rig: Rig) -> None:
    posts = [rig.scim.post("/Groups", json=entra.group("Twins")) for _ in range(50)]
    responses = await _together(rig, "group.create", posts)
    assert sorted(r.status_code for r in responses) == [201] + [409] * 49
    assert len(rig.backend.held_groups()) == 1 and rig.backend.calls()["group.create"] == 1


async def test_concurrent_identical_deletes_make_one_delete_and_404s(rig: Rig) -> None:
    user = (await rig.scim.post("/Users", json=entra.user("d2@contoso.com"))).json()
    deletes = [rig.scim.delete(f"/Users/{user['id']}") for _ in range(10)]
    responses = await _together(rig, "user.delete", deletes)
    assert sorted(r.status_code for r in responses) == [204] + [404] * 9
    assert rig.backend.calls()["user.delete"] == 1


async def test_concurrent_identical_patches_share_one_write(rig: Rig) -> None:
    user = (await rig.scim.post("/Users", json=entra.user("p@contoso.com"))).json()
    rig.backend.reset_calls()
    body = entra.patch(entra.op("Replace", "active", "False"))
    patches = [rig.scim.patch(f"/Users/{user['id']}", json=body) for _ in range(20)]
    responses = await _together(rig, "user.update", patches)
    assert {r.status_code for r in responses} == {200} and len({r.text for r in responses}) == 1
    assert rig.backend.calls()["user.update"] == 1


async def test_a_twin_of_a_create_whose_client_has_gone_gets_the_original_201(rig: Rig) -> None:
    """The leader is still waiting on Modyo and its client has gone: the twin arriving now
    (Entra's retry) gets the leader's 201 when it comes; a third twin gets 409."""
    body = entra.user("inflight@contoso.com")
    hold = rig.service.hold_next(rig.backend.route("user.create"))
    leader = asyncio.create_task(vanishing(rig.app, "POST", "/Users", body))
    await within("leader's create reaching Modyo", hold.arrived.wait())
    with logged("bridge.idempotency", WAITING, times=2) as both_waiting:
        retry = asyncio.create_task(rig.scim.post("/Users", json=body))
        third = asyncio.create_task(rig.scim.post("/Users", json=body))
        await within("2 twins waiting", both_waiting.wait())
    hold.release()
    assert await within("leader's end", leader) == []
    twins = await within("twins' answers", asyncio.gather(retry, third))
    answers = sorted(twins, key=lambda r: r.status_code)
    assert [r.status_code for r in answers] == [201, 409]
    assert answers[0].headers["x-idempotent-replay"] == "true"
    assert rig.backend.calls()["user.create"] == 1 and len(rig.backend.users()) == 1


# --------------------------------------------------------------------------- over real HTTP


async def test_over_real_http_a_vanished_client_s_create_is_replayed(backend: Backend) -> None:
    """uvicorn tells the bridge the client went (http.disconnect) before the answer: the
    retry gets the original 201; a delivered twin then gets 409."""
    service = backend.modyo
    settings = backend.with_settings(scim=DEADLINE)
    app = create_app(settings, modyo_transport=mock_transport(service, MODYO_URL))
    body = entra.user("wire@contoso.com")
    payload = json.dumps(body).encode()
    async with uvicorn_serving(app) as port:
        hold = service.hold_next(backend.route("user.create"))
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /scim/Users HTTP/1.1\r\nHost: bridge\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nContent-Type: application/scim+json\r\nContent-Length: "
            + str(len(payload)).encode()
            + b"\r\n\r\n"
            + payload
        )
        await writer.drain()
        await within("create reaching Modyo", hold.arrived.wait())
        with (
            logged("bridge.idempotency", GONE) as gone,
            logged("bridge.idempotency", KEPT) as kept,
        ):
            writer.close()
            await writer.wait_closed()
            await within("disconnect seen", gone.wait())
            hold.release()
            await within("answer kept", kept.wait())
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}/scim", headers=headers
        ) as client:
            retry = await client.post("/Users", json=body)
            twin = await client.post("/Users", json=body)
    assert retry.status_code == 201 and retry.headers["x-idempotent-replay"] == "true"
    assert retry.json()["userName"] == "wire@contoso.com"
    assert_scim_error(twin, 409, "uniqueness")
    assert backend.calls()["user.create"] == 2 and len(backend.users()) == 1


# --------------------------------------------------------------------------- the store


async def test_the_store_keeps_answers_within_its_bounds_and_ttl() -> None:
    now = [0.0]
    store = MemoryStore(max_entries=10, ttl_seconds=60, clock=lambda: now[0])
    answer = StoredAnswer(200, (), b"{}")
    for n in range(1000):
        await store.put(f"k{n}", answer, frozenset({f"User/{n % 37}"}))
        assert len(store) <= 10
        now[0] += 0.5
    kept = await store.claim("k999")
    assert kept is not None and kept.answer == answer and await store.claim("k0") is None
    assert await store.claim("k999") is None  # a claim takes it: no second retry gets it
    await store.put("k998", answer, frozenset())
    now[0] += 61
    assert await store.claim("k998") is None
    await store.put("fresh", answer, frozenset())
    assert len(store) == 1  # expired entries are swept on the way
    assert set(store._by_resource) == set()  # and their resource index with them


async def test_single_flight_lets_a_waiter_lead_when_the_leader_gives_up() -> None:
    store = MemoryStore(max_entries=10, ttl_seconds=60)
    lead = await store.begin("k")
    flight = await store.begin("k")
    assert isinstance(flight, Flight) and not isinstance(lead, Flight)
    waiting = asyncio.create_task(flight.outcome())
    await lead.abandon()
    assert await within("outcome", waiting) is None  # no outcome: the waiter begins again...
    assert not isinstance(await store.begin("k"), Flight)  # ...and leads


async def test_single_flight_hands_the_outcome_to_every_waiter() -> None:
    store = MemoryStore(max_entries=10, ttl_seconds=60)
    lead = await store.begin("k")
    flights = [await store.begin("k") for _ in range(3)]
    outcome = LeadResult(StoredAnswer(201, (), b"{}"), delivered=True, resource="User/1")
    assert not isinstance(lead, Flight)
    await lead.finish(outcome)
    assert [await f.outcome() for f in flights if isinstance(f, Flight)] == [outcome] * 3
    assert not isinstance(await store.begin("k"), Flight)  # the flight is over


# --------------------------------------------------------------------------- names in use


async def test_a_rename_to_a_name_being_created_waits_for_the_create(
    backend: Backend, redis_server: RedisServer
) -> None:
    """A rename takes the create lock of its new name (shared in Redis, so across replicas):
    it waits for the create in flight, then finds the name taken (409 ``uniqueness``);
    without the lock both pass the uniqueness check and two groups share one name."""
    store = {"backend": "redis", "redis_url": redis_server.url}
    async for rig in _rig(backend, idempotency=store):
        other = (await rig.scim.post("/Groups", json=entra.group("Other"))).json()
        hold = rig.service.hold_next(rig.backend.route("group.create"))
        create = asyncio.ensure_future(rig.scim.post("/Groups", json=entra.group("Same")))
        # the create holds the name's lock, Modyo has not applied it
        await within("create reaching Modyo", hold.arrived.wait())
        rename_body = entra.patch(entra.op("Replace", "displayName", "Same"))
        rename = asyncio.ensure_future(rig.scim.patch(f"/Groups/{other['id']}", json=rename_body))
        async with aioredis.from_url(redis_server.url) as probe:
            for _ in range(5_000):  # a hang guard: polled until the rename ends or waits
                if rename.done() or (await probe.info("clients"))["blocked_clients"] >= 1:
                    break
        assert not rename.done(), rename.result().text  # it waits on the name's lock
        hold.release()
        created, renamed = await within("answers", asyncio.gather(create, rename))
        assert created.status_code == 201
        assert_scim_error(renamed, 409, "uniqueness")
        assert [g.display_name for g in rig.backend.held_groups()].count("Same") == 1
