"""GET /Users and /Groups with the whole RFC 7644 §3.4.2.2 filter grammar, over the real app
and the fake Modyo: every operator, logic and precedence, value paths, case rules, dates,
what the bridge refuses, what it asks Modyo for, and the ``scim.max_filter_scan`` bound."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bridge.modyo.fake import FakeModyo, FaultyModyo
from bridge.modyo.rest import RestUpstream
from bridge.scim.attributes import served
from bridge.scim.filters import MAX_LOOKUPS, compile_filter, user_filterable
from tests import entra
from tests.backends import Backend, LoggedScim, differs, membership_lookup
from tests.conftest import (
    MODYO_TOKEN,
    assert_scim_error,
    bridge_client,
    create_group,
    create_user,
    make_settings,
)

RFC_INSTANT = "2011-05-13T04:42:34Z"  # RFC 7644 §3.4.2.2's meta.lastModified examples
PEOPLE: dict[str, dict[str, Any]] = {  # created in this order, at these instants
    "bjensen": dict(
        given="Barbara", family="Jensen", email="bjensen@example.com",
        external_id="obj-bjensen", created="2011-05-12T10:00:00Z",
    ),
    "JSmith": dict(
        given="John", family="Smith", email="jsmith@example.org",
        external_id="OBJ-JSmith", created=RFC_INSTANT,
    ),
    "omalley@contoso.com": dict(
        given="Kevin", family="O'Malley", email="kevin@contoso.com",
        external_id="obj-omalley", active=False, created="2011-05-14T00:00:00Z",
    ),
    "jane.doe@contoso.com": dict(
        given="Jane", family="Doe", email="Jane.Doe@Example.com",
        external_id="ext-jdoe", created="2015-10-11T09:00:00Z",
    ),
}  # fmt: skip
ALL = list(PEOPLE)
BJENSEN, JSMITH, OMALLEY, JANE = ALL

pytestmark = pytest.mark.upstreams("rest", "scim")


class Clock:
    """The fake's clock: each object it creates or changes is stamped ``at``."""

    def __init__(self) -> None:
        self.at = datetime(2020, 1, 1, tzinfo=UTC)

    def __call__(self) -> float:
        return self.at.timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> FakeModyo:
    return FakeModyo(token=MODYO_TOKEN, clock=clock)


@pytest.fixture
def logged_scim(clock: Clock) -> LoggedScim:
    return LoggedScim(token=MODYO_TOKEN, clock=clock)


@pytest.fixture
async def people(scim: httpx.AsyncClient, clock: Clock) -> dict[str, dict[str, Any]]:
    created = {}
    for user_name, fields in PEOPLE.items():
        fields = dict(fields)
        clock.at = datetime.fromisoformat(fields.pop("created"))
        created[user_name] = await create_user(scim, user_name, **fields)
    return created


async def _names(
    scim: httpx.AsyncClient, expression: str, resource: str = "/Users", **params: str
) -> list[str]:
    response = await scim.get(resource, params={"filter": expression, "count": "100", **params})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totalResults"] == len(body["Resources"])
    key = "userName" if resource == "/Users" else "displayName"
    return [resource[key] for resource in body["Resources"]]


def _except(*names: str) -> list[str]:
    return [name for name in ALL if name not in names]


# ---------------------------------------------------------------------- operators and logic


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # eq: "The attribute and operator values must be identical for a match."
        ('userName eq "bjensen"', [BJENSEN]),  # RFC 7644 §3.4.2.2 example
        # ne: "The attribute and operator values are not identical."
        ('userName ne "bjensen"', _except(BJENSEN)),
        # co: "The entire operator value must be a substring of the attribute value"
        ('name.familyName co "O\'Malley"', [OMALLEY]),  # RFC example
        ('name.familyName co "malle"', [OMALLEY]),
        # sw: "... starting at the beginning ... satisfied if the two strings are identical."
        ('userName sw "J"', [JSMITH, JANE]),  # RFC example
        ('urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"', [JSMITH, JANE]),  # RFC
        ('userName sw "bjensen"', [BJENSEN]),
        # ew: "... matching at the end ... satisfied if the two strings are identical."
        ('userName ew "@contoso.com"', [OMALLEY, JANE]),
        ('userName ew "jsmith"', [JSMITH]),
        # pr: "If the attribute has a non-empty value ... there is a match."
        ("externalId pr", ALL),
        ("name pr", ALL),  # "... or if it contains a non-empty node for complex attributes"
        ("emails pr", ALL),
        # gt ge lt le: "For string attribute types, this is a lexicographical comparison"
        ('userName gt "j"', [JSMITH, OMALLEY, JANE]),
        ('userName ge "jsmith"', [JSMITH, OMALLEY]),
        ('userName lt "jane"', [BJENSEN]),
        ('userName le "jane.doe@contoso.com"', [BJENSEN, JANE]),
        # "... and for DateTime types, it is a chronological comparison." (RFC examples)
        (f'meta.lastModified gt "{RFC_INSTANT}"', [OMALLEY, JANE]),
        (f'meta.lastModified ge "{RFC_INSTANT}"', [JSMITH, OMALLEY, JANE]),
        (f'meta.lastModified lt "{RFC_INSTANT}"', [BJENSEN]),
        (f'meta.lastModified le "{RFC_INSTANT}"', [BJENSEN, JSMITH]),
        ('meta.created gt "2015-10-10T14:38:21Z"', [JANE]),
        ('meta.created gt "2015-10-11"', [JANE]),  # no offset: UTC
        ('meta.created lt "2011-05-13T04:42:34"', [BJENSEN]),
        ('meta.created eq "2011-05-13T01:42:34-03:00"', [JSMITH]),  # the same instant
        (f'meta.created ne "{RFC_INSTANT}"', _except(JSMITH)),
        ("active eq false", [OMALLEY]),
        ("active ne true", [OMALLEY]),
        ('active eq "True"', _except(OMALLEY)),  # read as the boolean it names
        ("externalId eq null", []),  # every user carries one
        ("externalId ne null", ALL),
    ],
)
async def test_every_operator_as_rfc_7644_words_it(
    scim: httpx.AsyncClient, people: dict[str, Any], expression: str, expected: list[str]
) -> None:
    assert await _names(scim, expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # "not" takes precedence over "and", which takes precedence over "or"
        ('userName eq "bjensen" or userName eq "JSmith" and active eq false', [BJENSEN]),
        ('(userName eq "bjensen" or userName eq "JSmith") and active eq false', []),
        ('active eq false and userName eq "bjensen" or userName eq "JSmith"', [JSMITH]),
        ('active eq false and (userName eq "bjensen" or userName eq "JSmith")', []),
        ('not (active eq true) or userName eq "bjensen"', [BJENSEN, OMALLEY]),
        ('not (active eq true or userName eq "bjensen")', [OMALLEY]),
        ('not(userName sw "j")', [BJENSEN, OMALLEY]),
        ("not (not (active eq false))", [OMALLEY]),
        ('((userName sw "j"))', [JSMITH, JANE]),
        ('userName pr and not (userName sw "j") and not (active eq false)', [BJENSEN]),
        # RFC 7644 §3.4.2.2's examples, with the attributes Modyo does not hold replaced
        (
            'name.familyName eq "Smith" and (emails.value co "example.com" or '
            'emails.value co "example.org")',
            [JSMITH],
        ),
        (
            'active eq true and (emails co "example.com" or emails.value co "example.org")',
            [BJENSEN, JSMITH, JANE],
        ),
        (
            'userName ne "bjensen" and not (emails co "example.com" or '
            'emails.value co "example.org")',
            [OMALLEY],
        ),
        ('active eq true and (emails.type eq "work")', _except(OMALLEY)),
        ('active eq true and emails[type eq "work" and value co "@example.com"]', [BJENSEN, JANE]),
        (
            'emails[type eq "work" and value co "@example.com"] or '
            'emails[type eq "work" and value co "@contoso.com"]',
            [BJENSEN, OMALLEY, JANE],
        ),
    ],
)
async def test_logic_precedence_and_grouping(
    scim: httpx.AsyncClient, people: dict[str, Any], expression: str, expected: list[str]
) -> None:
    assert await _names(scim, expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('emails[type eq "work"]', ALL),
        ('emails[type eq "home"]', []),  # Modyo's one email is the work one
        ('emails[type eq "work"].value eq "JANE.DOE@EXAMPLE.COM"', [JANE]),  # Entra's form
        ('emails[value ew ".org" or value sw "bjensen"]', [BJENSEN, JSMITH]),
        ('emails[not (value co "example")]', [OMALLEY]),
        ("emails[type pr and value pr]", ALL),
        ('emails.type eq "work"', ALL),
        ('emails eq "kevin@contoso.com"', [OMALLEY]),  # a multi-valued attribute: its values
    ],
)
async def test_value_paths(
    scim: httpx.AsyncClient, people: dict[str, Any], expression: str, expected: list[str]
) -> None:
    assert await _names(scim, expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # RFC 7643 §2.1: attribute names (and RFC 7644 §3.4.2.2: operators) are case insensitive
        ('USERNAME EQ "BJENSEN"', [BJENSEN]),
        ('Name.GivenName Eq "barbara"', [BJENSEN]),
        ('emails[TYPE eq "WORK"].VALUE co "EXAMPLE.ORG"', [JSMITH]),
        # RFC 7643 §7 caseExact: userName, names and emails are not; externalId is (§3.1)
        ('externalId eq "obj-jsmith"', []),
        ('externalId eq "OBJ-JSmith"', [JSMITH]),
        ('externalId sw "obj-"', [BJENSEN, OMALLEY]),
        ('externalId co "JSMITH"', []),
        ('externalId gt "obj-c"', [OMALLEY]),  # ordering is case-sensitive too
        ('userName gt "C"', [JSMITH, OMALLEY, JANE]),  # ... and case-insensitive here
    ],
)
async def test_case_rules(
    scim: httpx.AsyncClient, people: dict[str, Any], expression: str, expected: list[str]
) -> None:
    assert await _names(scim, expression) == expected


async def test_id_is_compared_exactly(scim: httpx.AsyncClient, people: dict[str, Any]) -> None:
    """RFC 7643 §3.1: ``id`` is caseExact; every operator applies to it."""
    ids = {name: user["id"] for name, user in people.items()}
    assert await _names(scim, f'id eq "{ids[JANE]}"') == [JANE]
    assert await _names(scim, f'id ne "{ids[JANE]}"') == _except(JANE)
    assert await _names(scim, f'id eq "{ids[JANE]}" or id eq "{ids[BJENSEN]}"') == [JANE, BJENSEN]
    assert await _names(scim, f'id sw "{ids[JANE]}"') == [JANE]
    assert await _names(scim, "id pr") == ALL


async def test_substring_operators_on_dates_match_the_rendered_value(
    scim: httpx.AsyncClient, people: dict[str, Any]
) -> None:
    """RFC 7644 §3.4.2.2 defines co/sw/ew on "the attribute value" whatever its type; the
    bridge matches a dateTime as it renders it (scim2-models would match none)."""
    rendered = people[JSMITH]["meta"]["created"]
    assert rendered.startswith("2011-05-13T01:42:34")
    assert await _names(scim, 'meta.created sw "2011-05-13T01"') == [JSMITH]
    assert await _names(scim, 'meta.created co "2011-05-1"') == [BJENSEN, JSMITH, OMALLEY]


async def test_string_attributes_compare_any_string(
    scim: httpx.AsyncClient, people: dict[str, Any]
) -> None:
    """``emails.value`` is a String (RFC 7643 §4.1.2): a value that is not an address is still
    a value to compare, as Entra may send for an address Modyo accepted."""
    assert await _names(scim, 'emails.value gt "k"') == [OMALLEY]
    assert await _names(scim, 'emails[type eq "work"].value eq "not an address"') == []


# ---------------------------------------------------------------------- refused filters


@pytest.mark.parametrize(
    ("expression", "named"),
    [
        ("title pr", "title"),  # RFC 7644 §3.4.2.2's examples on attributes Modyo lacks
        ('title pr and userType eq "Employee"', "title"),
        ('title pr or userType eq "Intern"', "title"),
        ('schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"', "schemas"),
        (
            'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")',
            "userType",
        ),
        (
            'emails[type eq "work" and value co "@example.com"] or '
            'ims[type eq "xmpp" and value co "@foo.com"]',
            "ims",
        ),
        ('nickName eq "x"', "nickName"),
        ('displayName eq "Bruno"', "displayName"),  # a User's, which Modyo does not hold
        ("name.middleName pr", "name.middleName"),
        ('emails[display eq "x"]', "emails.display"),
        ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "x"',
         "department"),
        ('id eq "1" and manager eq "2"', "manager"),  # R10's manager check
        ("meta.location pr", "meta.location"),
        ('meta.resourceType eq "User"', "meta.resourceType"),
        ('urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "x"', "displayName"),
        ('unknownThing eq "x"', "unknownThing"),
    ],
)  # fmt: skip
async def test_attributes_the_bridge_does_not_hold_are_400_invalid_filter_naming_them(
    scim: httpx.AsyncClient, people: dict[str, Any], backend: Backend, expression: str, named: str
) -> None:
    """Never a silent "no match" or "everything": Entra acts on any answer."""
    backend.reset_calls()
    body = assert_scim_error(
        await scim.get("/Users", params={"filter": expression}), 400, "invalidFilter"
    )
    assert named in body["detail"] and "userName" in body["detail"]  # names what can be used
    assert backend.calls() == {}  # refused before any Modyo call


@pytest.mark.parametrize(
    "expression",
    [
        'name eq "Barbara Jensen"',  # RFC: "a fully qualified sub-attribute MUST be specified"
        "active gt true",  # RFC: ordering on a Boolean "SHALL cause a failed response"
        "active le false",
        'active co "t"',
        'meta.created gt "yesterday"',  # not a dateTime
        "userName eq true",
        'name[givenName eq "Barbara"]',  # a single-valued attribute has no values to select
        'emails[value.x eq "y"]',
        'userName regex "x"',  # RFC: an unrecognised operator is invalidFilter
        'userName eq "unterminated',
        "userName eq",
        '(userName eq "x"',
        'userName eq "x" and',
        "",
    ],
)
async def test_malformed_filters_are_400_invalid_filter(
    scim: httpx.AsyncClient, people: dict[str, Any], expression: str
) -> None:
    assert_scim_error(await scim.get("/Users", params={"filter": expression}), 400, "invalidFilter")


async def test_the_same_filter_by_post_search(
    scim: httpx.AsyncClient, people: dict[str, Any]
) -> None:
    """RFC 7644 §3.4.3: ``/.search`` takes the same filter grammar."""
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName sw "j" and not (emails co "example.org")',
    }
    response = await scim.post("/Users/.search", json=body)
    assert [user["userName"] for user in response.json()["Resources"]] == [JANE]
    body["filter"] = "title pr"
    assert_scim_error(await scim.post("/Users/.search", json=body), 400, "invalidFilter")


# ---------------------------------------------------------------------- what Modyo is asked


@pytest.fixture
async def crowd(people: dict[str, Any], backend: Backend) -> dict[str, Any]:
    """The four people among 250 others: a full listing is 3 pages of 100."""
    backend.seed_users(250, prefix="noise")
    backend.reset_calls()
    return people


PAGES = {"user.list": 3}
ONE, TWO = {"user.list": 1}, {"user.list": 2}
EMAIL_LOOKUPS = {  # the filters whose lookups are by email
    'emails[type eq "work"].value eq "jsmith@example.org"',
    'emails.value eq "kevin@contoso.com"',
    'emails[value eq "kevin@contoso.com" or value eq "jsmith@example.org"]',
}


@pytest.mark.parametrize(
    ("expression", "calls", "expected"),
    [
        # Entra's lookups: one call, as before
        ('userName eq "JSmith"', {"user.list": 1}, [JSMITH]),
        ('externalId eq "obj-omalley"', {"user.list": 1}, [OMALLEY]),
        ('emails[type eq "work"].value eq "jsmith@example.org"', ONE, [JSMITH]),
        ('emails.value eq "kevin@contoso.com"', {"user.list": 1}, [OMALLEY]),
        # an "and" with a searchable "eq" costs one call whatever its other terms are
        ('userName eq "bjensen" and not (active eq false)', {"user.list": 1}, [BJENSEN]),
        (
            'userName eq "bjensen" and (name.givenName sw "B" or meta.created gt "2020-01-01")',
            {"user.list": 1},
            [BJENSEN],
        ),
        ('userName eq "bjensen" and emails[not (value co "zz")]', ONE, [BJENSEN]),
        ('userName eq "bjensen" and externalId eq "nope"', {"user.list": 1}, []),
        ('not (active eq false) and userName eq "bjensen"', {"user.list": 1}, [BJENSEN]),
        # an "or" of searchable terms: one lookup each (fewer calls than the 3-page listing)
        ('userName eq "bjensen" or userName eq "JSmith"', TWO, [BJENSEN, JSMITH]),
        (
            '(userName eq "bjensen" and active eq true) or externalId eq "OBJ-JSmith"',
            {"user.list": 2},
            [BJENSEN, JSMITH],
        ),
        ('emails[value eq "kevin@contoso.com" or value eq "jsmith@example.org"]',
         {"user.list": 2}, [OMALLEY, JSMITH]),  # in the order of the lookups
        # anything else reads the listing, page by page
        ('userName eq "bjensen" or active eq false', PAGES, [BJENSEN, OMALLEY]),
        ('not (userName eq "bjensen") and userName sw "j"', PAGES, [JSMITH, JANE]),
        ('userName ne "x" and name.familyName eq "Doe"', PAGES, [JANE]),
    ],
)  # fmt: skip
async def test_what_modyo_is_asked(
    scim: httpx.AsyncClient,
    crowd: dict[str, Any],
    backend: Backend,
    expression: str,
    calls: dict[str, int],
    expected: list[str],
) -> None:
    """(scim mode: an email term is no lookup, Modyo has no email filter, so the listing is
    read: the difference "email filter pushed down".)"""
    if expression in EMAIL_LOOKUPS and not differs("email filter pushed down", backend.api):
        calls = PAGES
        expected = [name for name in ALL if name in expected]  # in the listing's order
    assert await _names(scim, expression) == expected
    assert backend.calls() == calls


async def test_lookups_by_id_read_the_object(
    scim: httpx.AsyncClient, crowd: dict[str, Any], backend: Backend
) -> None:
    jane, jsmith = crowd[JANE]["id"], crowd[JSMITH]["id"]
    assert await _names(scim, f'id eq "{jane}" and userName sw "x"') == []
    assert backend.calls() == {"user.read": 1}
    backend.reset_calls()
    assert await _names(scim, f'id eq "{jane}" or userName eq "JSmith"') == [JANE, JSMITH]
    assert backend.calls() == {"user.read": 1, "user.list": 1}
    backend.reset_calls()
    assert await _names(scim, f'id eq "{jsmith}" or id eq "999999" or id eq "x/y"') == [JSMITH]
    # "x/y" cannot be an id (bridge.upstream.is_safe_id): not asked, in either mode
    assert backend.calls() == {"user.read": 2}


async def test_an_or_of_more_lookups_than_the_bound_reads_the_listing(
    scim: httpx.AsyncClient, crowd: dict[str, Any], backend: Backend
) -> None:
    names = [f"noise{n}@example.com" for n in range(MAX_LOOKUPS + 1)]
    terms = [f'userName eq "{name}"' for name in names]
    assert await _names(scim, " or ".join(terms[:MAX_LOOKUPS])) == names[:MAX_LOOKUPS]
    assert backend.calls() == {"user.list": MAX_LOOKUPS}
    backend.reset_calls()
    assert await _names(scim, " or ".join(terms)) == names
    assert backend.calls() == PAGES


async def test_filtered_scans_page_exactly(
    scim: httpx.AsyncClient, crowd: dict[str, Any], backend: Backend
) -> None:
    """totalResults counts every match; startIndex/count window them in a stable order
    (Modyo's listing order: ids ascending in rest mode, creation order in scim mode)."""
    expected = [
        (user.id, user.user_name)
        for user in backend.held_users()
        if user.user_name.startswith("noise")
    ]
    seen = []
    for start in (1, 101, 201, 301):
        response = await scim.get(
            "/Users", params={"filter": 'userName sw "NOISE"', "startIndex": start, "count": 100}
        )
        body = response.json()
        assert body["totalResults"] == 250 and body["startIndex"] == start
        assert body["itemsPerPage"] == len(body["Resources"])
        seen += [(user["id"], user["userName"]) for user in body["Resources"]]
    assert seen == expected


async def test_a_modyo_that_ignores_search_parameters_still_yields_exact_answers(
    clock: Clock,
) -> None:
    """Correctness never rests on Modyo's search: every candidate is checked against the
    whole filter (docs/design/modyo-contract.md, assumption on filters)."""
    fake = FakeModyo(token=MODYO_TOKEN, ignore_filters=True, clock=clock)
    fake.seed_members(150, prefix="noise")
    async with bridge_client(FaultyModyo(fake), make_settings()) as scim:
        for user_name, fields in PEOPLE.items():
            fields = dict(fields)
            clock.at = datetime.fromisoformat(fields.pop("created"))
            await create_user(scim, user_name, **fields)
        assert await _names(scim, 'userName eq "bjensen" or userName eq "JSMITH"') == [
            BJENSEN,
            JSMITH,
        ]
        assert await _names(scim, 'externalId eq "obj-jsmith"') == []
        assert await _names(
            scim, 'emails[type eq "work"].value eq "jsmith@example.org" and active eq true'
        ) == [JSMITH]
        assert await _names(scim, 'userName eq "omalley@contoso.com" and active eq true') == []
        assert await _names(scim, 'name.familyName sw "o"') == [OMALLEY]


def test_entra_lookups_compare_the_held_value_without_rendering() -> None:
    """Entra's matching filters take the one-comparison path (no resource per candidate)."""
    filterable = user_filterable(served(RestUpstream.holds))
    for expression in ('userName eq "a"', "externalId eq jyoung", 'id eq "7"', 'emails eq "a@b.c"'):
        assert compile_filter(expression, filterable).binding is not None, expression
    for expression in ('userName eq "a" and active eq true', 'userName sw "a"', "active eq true"):
        assert compile_filter(expression, filterable).binding is None, expression


# ---------------------------------------------------------------------- the scan bound


@pytest.fixture
def limit() -> int:
    """``scim.max_filter_scan`` of this module's bridge: exactly the crowd's 254 users."""
    return 254


@pytest.fixture
def settings(limit: int) -> Any:
    return make_settings(scim={"max_filter_scan": limit})


@pytest.mark.parametrize("limit", [253, 0])
async def test_beyond_max_filter_scan_the_answer_is_400_too_many_with_no_page_read(
    scim: httpx.AsyncClient, crowd: dict[str, Any], backend: Backend, limit: int
) -> None:
    """RFC 7644 §3.12 ``tooMany``: "The specified filter yields many more results than the
    server is willing to calculate or process". Known from the first page's total."""
    body = assert_scim_error(
        await scim.get("/Users", params={"filter": 'userName sw "noise"'}), 400, "tooMany"
    )
    assert "254" in body["detail"] and "scim.max_filter_scan" in body["detail"]
    assert "userName" in body["detail"]  # says what would narrow it
    assert backend.calls() == {"user.list": 1}
    backend.reset_calls()
    assert await _names(scim, 'userName eq "JSmith" and active eq true') == [JSMITH]
    assert backend.calls() == {"user.list": 1}  # searchable filters are not bounded


async def test_up_to_max_filter_scan_the_listing_is_read(
    scim: httpx.AsyncClient, crowd: dict[str, Any], backend: Backend
) -> None:
    assert await _names(scim, 'userName sw "o"') == [OMALLEY]
    assert backend.calls() == PAGES


@pytest.mark.parametrize("limit", [2])
async def test_the_bound_applies_to_groups(
    scim: httpx.AsyncClient, backend: Backend, limit: int
) -> None:
    for name in ("Legal", "Legal Ops", "Finance"):
        await create_group(scim, name)
    backend.reset_calls()
    assert_scim_error(
        await scim.get("/Groups", params={"filter": 'displayName sw "L"'}), 400, "tooMany"
    )
    assert backend.calls() == {"group.list": 1}
    assert await _names(scim, 'displayName eq "legal"', "/Groups") == ["Legal"]


# ---------------------------------------------------------------------- groups


@pytest.fixture
async def teams(
    scim: httpx.AsyncClient, people: dict[str, Any], backend: Backend, clock: Clock
) -> dict[str, Any]:
    """Legal (bjensen), Legal Ops (JSmith), Finance (bjensen), Empty; created in 2021."""
    clock.at = datetime(2021, 1, 1, tzinfo=UTC)
    groups = {
        name: await create_group(scim, name) for name in ("Legal", "Legal Ops", "Finance", "Empty")
    }
    for group, member in (("Legal", BJENSEN), ("Legal Ops", JSMITH), ("Finance", BJENSEN)):
        operation = entra.op("Add", "members", entra.members(people[member]["id"]))
        response = await scim.patch(f"/Groups/{groups[group]['id']}", json=entra.patch(operation))
        assert response.status_code == 204
    backend.reset_calls()
    return {"groups": groups, "users": {name: user["id"] for name, user in people.items()}}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('displayName sw "legal"', ["Legal", "Legal Ops"]),
        ('displayName co "OPS"', ["Legal Ops"]),
        ('displayName ew "e"', ["Finance"]),
        ('displayName ne "Legal"', ["Legal Ops", "Finance", "Empty"]),
        ('displayName gt "F"', ["Legal", "Legal Ops", "Finance"]),
        ('externalId eq "obj-Finance"', ["Finance"]),  # caseExact
        ('externalId eq "OBJ-FINANCE"', []),
        ("externalId pr", ["Legal", "Legal Ops", "Finance", "Empty"]),
        ('meta.created ge "2020-01-01" and not (displayName sw "L")', ["Finance", "Empty"]),
        ('displayName eq "Legal" or displayName eq "Finance"', ["Legal", "Finance"]),
    ],
)  # fmt: skip
async def test_group_filters(
    scim: httpx.AsyncClient, teams: dict[str, Any], expression: str, expected: list[str]
) -> None:
    assert await _names(scim, expression, "/Groups") == expected


async def test_members_eq_is_answered_from_the_users_memberships(
    scim: httpx.AsyncClient, teams: dict[str, Any], backend: Backend
) -> None:
    """``members eq "<user id>"``: one memberships call for the users named, never a group's
    member list, whatever the groups' sizes."""
    users, groups = teams["users"], teams["groups"]
    bjensen, jsmith = users[BJENSEN], users[JSMITH]
    cases = [  # (filter, groups found, users it names)
        (f'members eq "{bjensen}"', ["Legal", "Finance"], 1),
        (f'members.value eq "{jsmith}"', ["Legal Ops"], 1),
        (f'not (members eq "{bjensen}")', ["Legal Ops", "Empty"], 1),
        (f'members eq "{bjensen}" or members eq "{jsmith}"', ["Legal", "Legal Ops", "Finance"], 2),
        (f'members eq "{bjensen}" and displayName sw "F"', ["Finance"], 1),
        ('members eq "999999" or members eq "abc"', [], 2),
    ]
    for expression, expected, named in cases:
        backend.reset_calls()
        found = await _names(scim, expression, "/Groups", excludedAttributes="members")
        assert found == expected, expression
        wanted = {"group.list": 1} | membership_lookup(backend.api, named)
        assert backend.calls() == wanted, expression
    backend.reset_calls()
    legal = groups["Legal"]["id"]
    params = {
        "filter": f'id eq "{legal}" and members eq "{bjensen}"',
        "excludedAttributes": "members",
    }
    body = (await scim.get("/Groups", params=params)).json()
    assert [group["id"] for group in body["Resources"]] == [legal]
    assert backend.calls() == {"group.read": 1} | membership_lookup(backend.api, 1)
    backend.reset_calls()
    params["filter"] = f'displayName eq "Nope" and members eq "{bjensen}"'
    assert (await scim.get("/Groups", params=params)).json()["totalResults"] == 0
    assert backend.calls() == {"group.list": 1}  # no candidate: no memberships asked


@pytest.mark.parametrize(
    "expression",
    [
        "members pr",
        'members ne "1"',
        'members co "1"',
        'members.display eq "Barbara Jensen"',
        'members.type eq "User"',
        "members.$ref pr",
        'members[value eq "1"]',
    ],
)
async def test_member_filters_that_would_read_every_member_list_are_refused(
    scim: httpx.AsyncClient, teams: dict[str, Any], expression: str
) -> None:
    body = assert_scim_error(
        await scim.get("/Groups", params={"filter": expression}), 400, "invalidFilter"
    )
    assert "member list" in body["detail"] and 'members eq "<user id>"' in body["detail"]


@pytest.mark.parametrize("expression", ['userName eq "x"', "members eq true", "title pr"])
async def test_unheld_group_attributes_are_refused(
    scim: httpx.AsyncClient, teams: dict[str, Any], expression: str
) -> None:
    assert_scim_error(
        await scim.get("/Groups", params={"filter": expression}), 400, "invalidFilter"
    )


async def test_emails_primary_is_held_and_filterable(
    scim: httpx.AsyncClient, people: dict[str, Any]
) -> None:
    """The one email is the primary one, so ``emails.primary eq true`` is every user with an
    email, and ``eq false`` none."""
    everyone = (await scim.get("/Users")).json()["totalResults"]
    primary = await scim.get("/Users", params={"filter": "emails.primary eq true"})
    assert primary.json()["totalResults"] == everyone > 0
    nobody = await scim.get("/Users", params={"filter": "emails.primary eq false"})
    assert nobody.json()["totalResults"] == 0
