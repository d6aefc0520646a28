"""The bridge's filters against scim2-models' own evaluator: random users in the fake Modyo,
random filters over the attributes the bridge holds, through the real app. The bridge must
answer exactly the users ``ScimFilter[User].match`` selects among those it serves, and
refuse (400 ``invalidFilter``) exactly the filters scim2-models refuses.

Left out of the generated filters, because the bridge follows RFC 7644 there instead (each
is tested in tests/test_filters.py): co/sw/ew on dateTimes, operands that are not valid
addresses on ``emails.value``, dateTimes without a UTC offset, and comparisons of a complex
attribute without a sub-attribute.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scim2_models import Context, InvalidFilterException, ScimFilter
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)

from bridge.modyo.fake import FakeModyo, FaultyModyo
from bridge.scim.models import BridgeUser
from tests import entra
from tests.harness import MODYO_TOKEN, bridge_client, make_settings
from tests.properties import examples

UserFilter = ScimFilter[BridgeUser]


@dataclass(frozen=True)
class Person:
    user_name: str
    email: str
    given: str | None
    family: str | None
    external_id: str | None
    active: bool
    created: datetime


INSTANTS = [
    datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC),
    datetime(2011, 5, 13, 4, 42, 35, tzinfo=UTC),
    datetime(2015, 10, 10, 14, 38, 21, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
]
USER_NAMES = ["ann", "Ann.Lee", "bob", "BOB@contoso.com", "carla", "dan.o'neil", "Zed", "a"]
EMAILS = ["ann@example.com", "Bob@Example.org", "carla@contoso.com", "x@y.io", "zed@EXAMPLE.com"]
NAMES = ["Ann", "ann", "Bob", "Zoë", "Zoe\u0308", "O'Neil", "lee", ""]  # "Zoë" twice: NFC, NFD
EXTERNAL_IDS = ["obj-1", "OBJ-1", "obj-2", "x"]
STRINGS = [*USER_NAMES, *EMAILS, *NAMES, *EXTERNAL_IDS, "work", "WORK", "home", "o", "example"]

people = st.lists(
    st.builds(
        Person,
        user_name=st.sampled_from(USER_NAMES),
        email=st.sampled_from(EMAILS),
        given=st.none() | st.sampled_from(NAMES[:-1]),
        family=st.none() | st.sampled_from(NAMES[:-1]),
        external_id=st.none() | st.sampled_from(EXTERNAL_IDS),
        active=st.booleans(),
        created=st.sampled_from(INSTANTS),
    ),
    min_size=1,
    max_size=6,
    unique_by=(lambda p: p.user_name.lower(), lambda p: p.email.lower()),
)


@st.composite
def texts(draw: st.DrawFn) -> str:
    """A value near the records' own: as is, re-cased, or a piece of it."""
    text = draw(st.sampled_from(STRINGS))
    change = draw(st.sampled_from(["same", "upper", "lower", "head", "tail"]))
    if change == "upper":
        return text.upper()
    if change == "lower":
        return text.lower()
    cut = draw(st.integers(0, len(text)))
    return text[:cut] if change == "head" else text[cut:]


def instants() -> st.SearchStrategy[str]:
    def spell(moment: datetime, shift: int, offset: int) -> str:
        moment = moment + timedelta(seconds=shift)
        return moment.astimezone(timezone(timedelta(hours=offset))).isoformat()

    return st.builds(
        spell, st.sampled_from(INSTANTS), st.sampled_from([-1, 0, 1]), st.sampled_from([0, -3, 5])
    )


ANY_OP = list(CompareOperator)
ORDERED = [op for op in CompareOperator if op.value not in ("co", "sw", "ew")]
STRING_PATHS = [
    AttrPath("userName"),
    AttrPath("name", "givenName"),
    AttrPath("name", "familyName"),
    AttrPath("name", "formatted"),
    AttrPath("externalId"),
    AttrPath("emails", "type"),
    AttrPath("id"),
    AttrPath("userName", uri=entra.USER_URN),
]
EMAIL_PATHS = [AttrPath("emails", "value"), AttrPath("emails")]
DATE_PATHS = [AttrPath("meta", "created"), AttrPath("meta", "lastModified")]
PRESENT_PATHS = [*STRING_PATHS, *EMAIL_PATHS, *DATE_PATHS, AttrPath("active"), AttrPath("name")]


def comparisons() -> st.SearchStrategy[FilterNode]:
    strings = st.builds(
        Comparison, st.sampled_from(STRING_PATHS), st.sampled_from(ANY_OP), texts() | st.none()
    )
    email_substrings = st.builds(
        Comparison,
        st.sampled_from(EMAIL_PATHS),
        st.sampled_from([CompareOperator.co, CompareOperator.sw, CompareOperator.ew]),
        texts(),
    )
    email_values = st.builds(
        Comparison,
        st.sampled_from(EMAIL_PATHS),
        st.sampled_from(ORDERED),
        st.sampled_from(EMAILS) | st.sampled_from(EMAILS).map(str.upper),
    )
    dates = st.builds(Comparison, st.sampled_from(DATE_PATHS), st.sampled_from(ORDERED), instants())
    booleans = st.builds(
        Comparison,
        st.just(AttrPath("active")),
        st.sampled_from(ANY_OP),  # ordering and substrings: refused by both
        st.booleans() | st.none(),
    )
    present = st.builds(Present, st.sampled_from(PRESENT_PATHS))
    return strings | email_substrings | email_values | dates | booleans | present


def email_selections() -> st.SearchStrategy[FilterNode]:
    inner: st.SearchStrategy[FilterNode] = (
        st.builds(Comparison, st.just(AttrPath("type")), st.sampled_from(ANY_OP), texts())
        | st.builds(
            Comparison,
            st.just(AttrPath("value")),
            st.sampled_from([CompareOperator.co, CompareOperator.sw, CompareOperator.ew]),
            texts(),
        )
        | st.builds(Present, st.sampled_from([AttrPath("type"), AttrPath("value")]))
    )
    inner = st.recursive(inner, _combinations, max_leaves=3)
    return st.builds(ValuePath, st.just(AttrPath("emails")), inner)


def _combinations(children: st.SearchStrategy[FilterNode]) -> st.SearchStrategy[FilterNode]:
    joined = st.builds(
        LogicalExpr,
        st.sampled_from([LogicalOperator.and_, LogicalOperator.or_]),
        st.lists(children, min_size=2, max_size=3).map(tuple),
    )
    return joined | st.builds(Not, children)


filters = st.recursive(comparisons() | email_selections(), _combinations, max_leaves=6).map(str)


async def _answers(group: list[Person], expressions: list[str]) -> list[tuple[str, Any, Any]]:
    moment = {"at": INSTANTS[0]}
    fake = FakeModyo(token=MODYO_TOKEN, clock=lambda: moment["at"].timestamp())
    out = []
    async with bridge_client(FaultyModyo(fake), make_settings()) as scim:
        for person in group:
            moment["at"] = person.created
            name = {
                key: value
                for key, value in (("givenName", person.given), ("familyName", person.family))
                if value is not None
            }
            body: dict[str, Any] = {
                "schemas": [entra.USER_URN],
                "userName": person.user_name,
                "active": person.active,
                "emails": [{"type": "work", "primary": True, "value": person.email}],
                **({"name": name} if name else {}),
                **({"externalId": person.external_id} if person.external_id else {}),
            }
            response = await scim.post("/Users", json=body)
            assert response.status_code == 201, response.text
        listing = (await scim.get("/Users", params={"count": 100})).json()["Resources"]
        served = [
            BridgeUser.model_validate(user, scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
            for user in listing
        ]
        for expression in expressions:
            try:
                scim_filter = UserFilter(expression)
            except InvalidFilterException:
                oracle: Any = "invalidFilter"
            else:
                oracle = sorted(user.id for user in served if scim_filter.match(user))
            response = await scim.get("/Users", params={"filter": expression, "count": 100})
            body = response.json()
            if response.status_code == 200:
                assert body["totalResults"] == len(body["Resources"])
                bridge: Any = sorted(user["id"] for user in body["Resources"])
            else:
                assert response.status_code == 400, response.text
                bridge = body.get("scimType")
            out.append((expression, bridge, oracle))
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@settings(
    max_examples=examples(100),
    derandomize=True,  # the same examples on every run: CI never flakes, failures reproduce
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(group=people, expressions=st.lists(filters, min_size=1, max_size=5))
def test_the_bridge_answers_as_scim2_models_evaluates(
    group: list[Person], expressions: list[str]
) -> None:
    for expression, bridge, oracle in asyncio.run(_answers(group, expressions)):
        assert bridge == oracle, expression
