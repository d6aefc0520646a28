"""The work one SCIM request may cause is bounded, in both upstream modes: a filter's length and
comparisons, the members and operations of a PATCH, the JSON values of a body and the Modyo
calls of a request are each refused before the first Modyo call; an id no upstream can hold
is never asked of one; a scan gives the event loop back between batches
(docs/operator/security.md). The same over real sockets: tests/test_hostile_network.py."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

import bridge.scim.mapping
import bridge.scim.users
from tests import entra
from tests.backends import Backend
from tests.conftest import assert_scim_error, create_group

pytestmark = pytest.mark.upstreams("rest", "scim")
MAX_FILTER_LENGTH = 4096  # the defaults of the settings (config.example.toml)
MAX_FILTER_COMPARISONS = 20
MAX_PATCH_MEMBERS = 1000
MAX_PATCH_OPERATIONS = 1000
MAX_JSON_VALUES = 10_000
BATCH = 100
"""Records a scan evaluates between two turns of the event loop (``bridge.yielding``)."""


def _search(text: str) -> dict[str, Any]:
    return {"schemas": [entra.SEARCH_URN], "filter": text}


async def test_a_filter_longer_than_the_limit_is_refused_before_any_call(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    value = "x" * (MAX_FILTER_LENGTH - len('userName eq ""'))
    assert (await scim.post("/Users/.search", json=_search(f'userName eq "{value}"'))).is_success
    backend.reset_calls()
    longer = await scim.post("/Users/.search", json=_search(f'userName eq "{value}x"'))
    body = assert_scim_error(longer, 400, "invalidFilter")
    assert "scim.max_filter_length" in body["detail"]
    assert backend.calls() == {}


async def test_a_filter_of_more_comparisons_than_the_limit_is_refused_before_any_call(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    """5,000 terms (124 KB) held the event loop 13 s; the limit answers before parsing."""
    terms = [f'name.givenName eq "g{n}"' for n in range(MAX_FILTER_COMPARISONS)]
    assert (await scim.post("/Users/.search", json=_search(" or ".join(terms)))).is_success
    backend.reset_calls()
    more = " or ".join([*terms, "name.familyName pr"])
    body = assert_scim_error(
        await scim.get("/Users", params={"filter": more}), 400, "invalidFilter"
    )
    assert "scim.max_filter_comparisons" in body["detail"]
    huge = " or ".join(f'name.givenName eq "g{n:06d}"' for n in range(5000))
    assert_scim_error(await scim.post("/Users/.search", json=_search(huge)), 400, "invalidFilter")
    assert backend.calls() == {}


def _ids(count: int) -> list[str]:
    return [str(100_000 + n) for n in range(count)]


def _pairs(ids: list[str]) -> list[list[str]]:
    """Two ids an operation: members past the limit, operations within theirs."""
    return [ids[start : start + 2] for start in range(0, len(ids), 2)]


@pytest.mark.parametrize(
    "operations",
    [
        # Entra's Add (the fast path)
        lambda ids: [entra.op("Add", "members", entra.members(*ids))],
        # removals by filter, two members an operation (within the operations' limit)
        lambda ids: [
            entra.op("remove", f'members[value eq "{a}" or value eq "{b}"]', no_value=True)
            for a, b in _pairs(ids)
        ],
        # a replace of all members, and the members spread over several operations
        lambda ids: [entra.op("replace", "members", entra.members(*ids))],
        lambda ids: [entra.op("add", "members", entra.members(*pair)) for pair in _pairs(ids)],
    ],
    ids=["add", "remove-filters", "replace", "several-ops"],
)
async def test_a_patch_naming_more_members_than_the_limit_is_refused_before_any_call(
    scim: httpx.AsyncClient, backend: Backend, operations: Any
) -> None:
    """One group PATCH naming 45,000 members made 450 Modyo calls (REST) and 17,845 (SCIM)
    before failing."""
    group = backend.seed_group("Big")
    backend.reset_calls()
    patch = entra.patch(*operations(_ids(MAX_PATCH_MEMBERS + 2)))
    body = assert_scim_error(await scim.patch(f"/Groups/{group}", json=patch), 413)
    assert "scim.max_patch_members" in body["detail"]
    assert backend.calls() == {}


async def test_a_group_created_or_replaced_with_more_members_than_the_limit_is_refused(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    group = await create_group(scim, "Replaced")
    backend.reset_calls()
    many = entra.members(*_ids(MAX_PATCH_MEMBERS + 1))
    created = await scim.post("/Groups", json=entra.group("Created") | {"members": many})
    assert_scim_error(created, 413)
    replaced = await scim.put(
        f"/Groups/{group['id']}", json=entra.group("Replaced") | {"members": many}
    )
    assert_scim_error(replaced, 413)
    assert backend.calls() == {}


async def test_a_patch_of_more_operations_than_the_limit_is_refused_before_any_call(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    user = backend.seed_users(1)[0]
    group = backend.seed_group("Renamed")
    backend.reset_calls()
    renames = [entra.op("Replace", "displayName", f"n{n}") for n in range(MAX_PATCH_OPERATIONS + 1)]
    body = assert_scim_error(await scim.patch(f"/Groups/{group}", json=entra.patch(*renames)), 413)
    assert "scim.max_patch_operations" in body["detail"]
    titles = [entra.op("Replace", "title", f"t{n}") for n in range(MAX_PATCH_OPERATIONS + 1)]
    assert_scim_error(await scim.patch(f"/Users/{user}", json=entra.patch(*titles)), 413)
    assert backend.calls() == {}


async def test_a_body_of_more_json_values_than_the_limit_is_refused_before_any_call(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    """An attribute the bridge ignores still costs its validation: a body of many values is
    refused before anything reads them."""
    body = entra.user("values@contoso.com") | {"nickName": list(range(MAX_JSON_VALUES))}
    refused = assert_scim_error(await scim.post("/Users", json=body), 413)
    assert "scim.max_json_values" in refused["detail"]
    assert backend.calls() == {}


async def test_a_request_over_the_modyo_call_budget_is_refused_before_those_calls(
    backend: Backend,
) -> None:
    """A scan announces its pages after the first: past ``modyo.max_calls_per_request`` the
    rest is never asked (400 ``tooMany``, RFC 7644 §3.4.2.2); one within it is served."""
    settings = backend.with_settings(
        scim={"max_patch_members": 5}, modyo={"max_calls_per_request": 10}
    )
    backend.seed_users(1_500, "budget")  # fifteen pages of a hundred
    backend.reset_calls()
    async with backend.client(settings=settings) as scim:
        over = await scim.get("/Users", params={"filter": 'name.familyName eq "nobody"'})
        body = assert_scim_error(over, 400, "tooMany")
        assert "modyo.max_calls_per_request" in body["detail"]
        assert backend.calls() == {"user.list": 1}
        backend.reset_calls()
        listed = await scim.get("/Users", params={"count": "100"})
        assert listed.status_code == 200 and listed.json()["totalResults"] == 1_500


async def test_a_scan_gives_the_event_loop_back_between_batches(
    scim: httpx.AsyncClient, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter evaluated over every user (one Modyo cannot search) lets other tasks run at
    least every :data:`BATCH` users: counted as the loop turns a task observes between two
    evaluations, not timed. Before, 3,000 users (5,000 terms) held the loop for 13 s."""
    backend.seed_users(1_000, "loop")
    turns = 0
    evaluated_at: list[int] = []
    render = bridge.scim.mapping.user_json

    def counting(*args: Any) -> Any:
        evaluated_at.append(turns)
        return render(*args)

    async def ticking(stop: asyncio.Event) -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await asyncio.sleep(0)

    monkeypatch.setattr(bridge.scim.users, "user_json", counting)
    stop = asyncio.Event()
    ticker = asyncio.create_task(ticking(stop))
    text = 'name.givenName eq "nobody" or name.familyName eq "nobody"'
    answer = await scim.get("/Users", params={"filter": text})
    stop.set()
    await ticker
    assert answer.status_code == 200 and answer.json()["totalResults"] == 0
    assert len(evaluated_at) == 1_000
    assert max(Counter(evaluated_at).values()) <= BATCH


@pytest.mark.parametrize(
    "raw", ["..%2F..%2Fprofile", "a%0D%0Ab", "a%0Ab", "a%2Fb", "a%3Fb", "x" * 65, "%2E%2E"]
)
async def test_an_id_no_upstream_can_hold_is_not_found_without_a_call(
    scim: httpx.AsyncClient, backend: Backend, raw: str
) -> None:
    """One rule for every upstream (``bridge.upstream.is_safe_id``), at the SCIM edge: in
    SCIM mode ``..%2F..%2Fprofile`` and CR/LF reached Modyo percent-encoded."""
    backend.reset_calls()
    patch = entra.patch(entra.op("Replace", "active", "False"))
    for method, path, body in [
        ("GET", f"/Users/{raw}", None),
        ("PATCH", f"/Users/{raw}", patch),
        ("PUT", f"/Users/{raw}", entra.user("put@contoso.com")),
        ("DELETE", f"/Users/{raw}", None),
        ("GET", f"/Groups/{raw}", None),
        ("DELETE", f"/Groups/{raw}", None),
    ]:
        url = httpx.URL(f"http://bridge.test/scim{path}")
        answer = await scim.request(method, url, json=body)
        assert_scim_error(answer, 404)
    assert backend.calls() == {}


async def test_a_member_id_no_upstream_can_hold_is_an_unknown_user_without_a_call(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    group = backend.seed_group("Members")
    backend.reset_calls()
    bad = ["../../profile", "a\r\nb", "x" * 65]
    added = await scim.patch(
        f"/Groups/{group}", json=entra.patch(entra.op("Add", "members", entra.members(*bad)))
    )
    assert_scim_error(added, 400, "invalidValue")
    removed = await scim.patch(
        f"/Groups/{group}", json=entra.patch(entra.op("Remove", "members", entra.members(*bad)))
    )
    assert removed.status_code == 204  # no such user is a member: nothing to do
    found = await scim.get(
        "/Groups", params={"filter": 'members eq "../../profile"', "excludedAttributes": "members"}
    )
    assert found.json()["totalResults"] == 0
    assert not {"user.read", "user.list", "members.add", "members.remove"} & set(backend.calls())
