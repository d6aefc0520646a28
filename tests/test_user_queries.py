"""GET /Users: Entra's matching filters (R3, R10), pagination (R22), attributes (RFC 7644 §3.9)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bridge.modyo.fake import FakeModyo, FaultyModyo, mock_transport
from bridge.scim.requests import PAST_EVERY_LISTING
from tests import entra
from tests.backends import Backend, differs
from tests.conftest import MODYO_URL, assert_scim_error, create_user
from tests.hostile import ABSURD_START_INDEXES
from tests.scim_mode import Recording

pytestmark = pytest.mark.upstreams("rest", "scim")

People = dict[str, dict[str, Any]]
"""The users created by the ``people`` fixture, by first name."""


async def _filter(scim: httpx.AsyncClient, expression: str, **params: str) -> dict[str, Any]:
    response = await scim.get("/Users", params={"filter": expression, **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["schemas"] == [entra.LIST_URN]
    return body


@pytest.fixture
async def people(scim: httpx.AsyncClient) -> People:
    created = {}
    for name in ("alba", "bruno", "carla"):
        created[name] = await create_user(
            scim, f"{name}@contoso.com", external_id=f"obj-{name}", email=f"{name}.mail@contoso.com"
        )
    return created


@pytest.mark.parametrize(
    ("expression", "who"),
    [
        ('userName eq "bruno@contoso.com"', "bruno"),
        ('userName eq "BRUNO@Contoso.com"', "bruno"),  # userName is caseExact false
        ('UserName eq "bruno@contoso.com"', "bruno"),  # attribute names too
        ("externalId eq obj-carla", "carla"),  # Microsoft's unquoted example
        ('externalId eq "obj-carla"', "carla"),
        ('emails[type eq "work"].value eq "alba.mail@contoso.com"', "alba"),
        ('emails.value eq "alba.mail@contoso.com"', "alba"),
        ('userName eq "bruno@contoso.com" and externalId eq "obj-bruno"', "bruno"),
    ],
)
async def test_matching_filters_find_exactly_one(
    scim: httpx.AsyncClient, people: People, expression: str, who: str
) -> None:
    body = await _filter(scim, expression)
    assert body["totalResults"] == 1
    assert [user["id"] for user in body["Resources"]] == [people[who]["id"]]


async def test_filter_by_id_with_and_without_quotes(
    scim: httpx.AsyncClient, people: People
) -> None:
    user_id = people["alba"]["id"]
    for expression in (f'id eq "{user_id}"', f"id eq {user_id}", 'id eq "999999"', 'id eq "abc"'):
        body = await _filter(scim, expression)
        expected = [user_id] if user_id in expression else []
        assert [user["id"] for user in body["Resources"]] == expected, expression


@pytest.mark.parametrize(
    "expression",
    [
        'userName eq "nobody@contoso.com"',
        'externalId eq "obj-nobody"',
        'userName eq "bruno@contoso.com" and externalId eq "obj-carla"',  # and: both must hold
        'emails[type eq "home"].value eq "alba.mail@contoso.com"',  # Modyo's email is the work one
    ],
)
async def test_zero_matches_is_an_empty_list_response(
    scim: httpx.AsyncClient, people: People, expression: str
) -> None:
    body = await _filter(scim, expression)
    assert (body["totalResults"], body["itemsPerPage"], body["Resources"]) == (0, 0, [])


async def test_a_filter_lookup_costs_one_modyo_call(
    scim: httpx.AsyncClient, people: People, backend: Backend
) -> None:
    backend.reset_calls()
    await _filter(scim, 'userName eq "alba@contoso.com"')
    assert backend.calls() == {"user.list": 1}


@pytest.mark.parametrize(
    ("expression", "who"),
    [
        ('userName co "RUN"', ["bruno"]),
        ('userName sw "b" or userName eq "carla@contoso.com"', ["bruno", "carla"]),
        ('not (userName eq "alba@contoso.com") and active eq true', ["bruno", "carla"]),
        ("userName pr", ["alba", "bruno", "carla"]),
    ],
)
async def test_any_rfc_7644_filter_on_held_attributes(
    scim: httpx.AsyncClient, people: dict[str, Any], expression: str, who: list[str]
) -> None:
    """The whole grammar (tests/test_filters.py goes through it operator by operator)."""
    body = await _filter(scim, expression)
    assert [user["id"] for user in body["Resources"]] == [people[name]["id"] for name in who]


@pytest.mark.parametrize(
    "expression",
    [
        'displayName eq "Bruno"',
        'id eq "1" and manager eq "2"',
        'userName eq "unterminated',
        "userName eq",
    ],
)
async def test_filters_the_bridge_cannot_honour_are_400_invalid_filter(
    scim: httpx.AsyncClient, people: People, expression: str
) -> None:
    """Never a silent "all users": Entra would match the wrong person."""
    response = await scim.get("/Users", params={"filter": expression})
    assert_scim_error(response, 400, "invalidFilter")


async def test_listing_pages_with_start_index_and_count(scim: httpx.AsyncClient) -> None:
    """R22: Microsoft's suite pages with count=5 and checks startIndex = page*5+1."""
    ids = [(await create_user(scim, f"page{n}@contoso.com"))["id"] for n in range(12)]
    seen = []
    for page in range(3):
        response = await scim.get("/Users", params={"startIndex": page * 5 + 1, "count": 5})
        body = response.json()
        assert body["totalResults"] == 12
        assert body["startIndex"] == page * 5 + 1
        assert body["itemsPerPage"] == len(body["Resources"]) == (5 if page < 2 else 2)
        seen += [user["id"] for user in body["Resources"]]
    assert seen == ids  # stable order, no gap, no repeat


async def test_listing_pages_after_deletes(scim: httpx.AsyncClient, backend: Backend) -> None:
    """Deleted users are never listed, and every other user is listed once. rest: the
    windows and totalResults are exact. scim (the difference "listing after deletes"): the
    deleted users are still in Modyo's listing, so a page leaves them out and holds fewer
    than ``count``, and its totalResults discounts only those of its own window."""
    ids = [(await create_user(scim, f"del{n}@contoso.com"))["id"] for n in range(12)]
    for gone in (ids[1], ids[8]):
        assert (await scim.delete(f"/Users/{gone}")).status_code == 204
    live = [user_id for user_id in ids if user_id not in (ids[1], ids[8])]
    pages = []
    for start in (1, 6, 11):
        body = (await scim.get("/Users", params={"startIndex": start, "count": 5})).json()
        assert body["itemsPerPage"] == len(body["Resources"])
        pages.append((body["totalResults"], [user["id"] for user in body["Resources"]]))
    seen = [user_id for _, page in pages for user_id in page]
    if differs("exact listing windows", backend.api):
        assert pages == [(10, live[:5]), (10, live[5:10]), (10, [])]
    else:  # Modyo's windows: rows 1-5, 6-10, 11-12, each without its deleted users
        assert pages == [(11, live[:4]), (11, live[4:8]), (12, live[8:])]
    assert seen == live


async def test_unaligned_window_and_out_of_range_pages(scim: httpx.AsyncClient) -> None:
    ids = [(await create_user(scim, f"win{n}@contoso.com"))["id"] for n in range(7)]
    body = (await scim.get("/Users", params={"startIndex": 3, "count": 4})).json()
    assert [user["id"] for user in body["Resources"]] == ids[2:6]
    body = (await scim.get("/Users", params={"startIndex": 50, "count": 5})).json()
    assert (body["totalResults"], body["Resources"]) == (7, [])
    body = (await scim.get("/Users", params={"count": 0})).json()
    assert (body["totalResults"], body["itemsPerPage"]) == (7, 0)
    body = (await scim.get("/Users", params={"startIndex": 0, "count": -3})).json()
    assert (body["startIndex"], body["itemsPerPage"]) == (1, 0)


@pytest.mark.parametrize("start", ABSURD_START_INDEXES, ids=["int64", "5000-digits"])
async def test_a_start_index_past_every_listing_is_an_empty_page(
    backend: Backend, start: str
) -> None:
    """RFC 7644 §3.4.2.4, as a URL parameter and in a SearchRequest: an empty page with the
    listing's total, and Modyo is asked for that total alone (one call whose numbers are all
    small), never for the offset: the fake of Modyo's SCIM server failed on it (a 500)."""
    backend.seed_users(3)
    recording = Recording(mock_transport(backend.modyo, MODYO_URL))
    async with backend.client(transport=recording) as scim:
        got = await scim.get("/Users", params={"startIndex": start})
        searched = await scim.post("/Users/.search", json={"startIndex": int(start[:40])})
    for response in (got, searched):
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["totalResults"], body["itemsPerPage"], body["Resources"]) == (3, 0, [])
        assert body["startIndex"] == PAST_EVERY_LISTING
    assert [sent.method for sent in recording.sent] == ["GET", "GET"]
    numbers = [int(value) for sent in recording.sent for _, value in sent.params if value.isdigit()]
    assert numbers and max(numbers) <= 1, recording.sent


async def test_filtered_results_page_too(scim: httpx.AsyncClient, people: People) -> None:
    body = await _filter(scim, 'userName eq "alba@contoso.com"', startIndex="2", count="5")
    assert (body["totalResults"], body["Resources"]) == (1, [])


async def test_count_is_capped_at_the_maximum_page_size(scim: httpx.AsyncClient) -> None:
    for n in range(3):
        await create_user(scim, f"cap{n}@contoso.com")
    body = (await scim.get("/Users", params={"count": 100000})).json()
    assert body["itemsPerPage"] == 3


async def test_non_integer_paging_is_400(scim: httpx.AsyncClient) -> None:
    assert_scim_error(await scim.get("/Users", params={"count": "ten"}), 400, "invalidValue")


async def test_attributes_and_excluded_attributes(scim: httpx.AsyncClient, people: People) -> None:
    user_id = people["alba"]["id"]
    only = (
        await scim.get(f"/Users/{user_id}", params={"attributes": "userName,name.givenName"})
    ).json()
    assert set(only) == {"schemas", "id", "userName", "name"}
    assert only["name"] == {"givenName": "Test"}
    without = (
        await scim.get(f"/Users/{user_id}", params={"excludedAttributes": "emails,meta"})
    ).json()
    assert "emails" not in without and "meta" not in without and without["userName"]
    listed = (
        await scim.get("/Users", params={"filter": f'id eq "{user_id}"', "attributes": "id"})
    ).json()
    assert listed["Resources"] == [{"schemas": [entra.USER_URN], "id": user_id}]


async def test_unknown_query_parameters_are_ignored(
    scim: httpx.AsyncClient, people: People
) -> None:
    """Tenant URLs carry ``?aadOptscim062020``; it reaches every request's query string."""
    response = await scim.get(
        "/Users?aadOptscim062020", params={"filter": 'userName eq "alba@contoso.com"'}
    )
    assert response.json()["totalResults"] == 1


@pytest.mark.parametrize(
    ("expression", "who"),
    [
        ('userName eq "BRUNO@contoso.com"', "bruno"),
        ("externalId eq obj-carla", "carla"),
        ('externalId eq "OBJ-CARLA"', None),  # externalId is caseExact
        ('emails[type eq "work"].value eq "alba.mail@contoso.com"', "alba"),
        ('userName eq "alba@contoso.com" and externalId eq "obj-bruno"', None),
    ],
)
async def test_a_modyo_that_ignores_search_parameters_still_yields_exact_matches(
    expression: str, who: str | None
) -> None:
    """Correctness never rests on Modyo's filtering: every candidate is re-checked against the
    SCIM filter, and every page is read (docs/design/modyo-contract.md, assumption on filters)."""
    from tests.conftest import MODYO_TOKEN, bridge_client, make_settings

    fake = FakeModyo(token=MODYO_TOKEN, ignore_filters=True)
    fake.seed_members(150, prefix="noise")  # two pages of unrelated team members
    async with bridge_client(FaultyModyo(fake), make_settings()) as scim:
        people = {}
        for name in ("alba", "bruno", "carla"):
            people[name] = await create_user(
                scim,
                f"{name}@contoso.com",
                external_id=f"obj-{name}",
                email=f"{name}.mail@contoso.com",
            )
        body = await _filter(scim, expression)
    expected = [] if who is None else [people[who]["id"]]
    assert [user["id"] for user in body["Resources"]] == expected
