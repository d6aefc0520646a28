"""What the upstream holds is declared once (its ``holds``); ``/Schemas``, validation, the
fast paths and the filters all follow a change made there and nowhere else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from asgi_lifespan import LifespanManager

from bridge.edge.app import create_app
from bridge.modyo.fake import FakeModyo, FaultyModyo, mock_transport
from bridge.modyo.http import ModyoHttp
from bridge.modyo.rest import RestUpstream
from bridge.modyo.retry import RetryPolicy
from bridge.scim.attributes import served
from bridge.scim.fast_paths import FastPaths
from bridge.scim.unheld import forget_noted
from bridge.upstream import UserField
from tests import entra
from tests.conftest import (
    BASE,
    MODYO_URL,
    TOKEN,
    assert_scim_error,
    make_settings,
    quiet_readiness,
)


class WithoutFormattedName(RestUpstream):
    """The REST upstream, told in its one declaration that it cannot hold name.formatted nor
    search externalId."""

    holds = replace(
        RestUpstream.holds,
        user=RestUpstream.holds.user - {UserField.FORMATTED_NAME},
        user_search=RestUpstream.holds.user_search - {UserField.EXTERNAL_ID},
    )


@pytest.fixture
async def narrowed(fake: FakeModyo) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings()
    http = ModyoHttp(
        settings.modyo, RetryPolicy(settings.retry), mock_transport(FaultyModyo(fake), MODYO_URL)
    )
    app = create_app(
        settings, upstream=WithoutFormattedName(http), readiness=quiet_readiness(settings)
    )
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers) as client:
            yield client


def _user_schema(body: dict[str, object]) -> dict[str, object]:
    resources = body["Resources"]
    assert isinstance(resources, list)
    return next(r for r in resources if r["id"] == entra.USER_URN)


async def test_schemas_advertise_only_what_the_upstream_holds(
    narrowed: httpx.AsyncClient, scim: httpx.AsyncClient
) -> None:
    def name_subs(body: dict[str, object]) -> set[str]:
        attributes = _user_schema(body)["attributes"]
        assert isinstance(attributes, list)
        name = next(a for a in attributes if a["name"] == "name")
        return {sub["name"] for sub in name["subAttributes"]}

    assert name_subs((await scim.get("/Schemas")).json()) == {
        "formatted",
        "familyName",
        "givenName",
    }
    assert name_subs((await narrowed.get("/Schemas")).json()) == {"familyName", "givenName"}


async def test_creation_and_patch_ignore_what_the_upstream_does_not_hold(
    narrowed: httpx.AsyncClient, fake: FakeModyo, caplog: pytest.LogCaptureFixture
) -> None:
    forget_noted()
    body = entra.user("ann@contoso.com", given="Ann", family="Lee")
    body["name"]["formatted"] = "Dr. Ann Lee"
    with caplog.at_level(logging.WARNING, logger="bridge.scim"):
        created = await narrowed.post("/Users", json=body)
        assert created.status_code == 201, created.text
        (member,) = fake.team_members.values()
        assert member["name"] == "Ann Lee"  # Modyo's own derivation: the formatted name never went
        fake.reset_calls()
        patched = await narrowed.patch(
            f"/Users/{created.json()['id']}",
            json=entra.patch(entra.op("Replace", "name.formatted", "Ann L.")),
        )
    assert patched.status_code == 200
    assert dict(fake.calls) == {"GET /team_members/:id": 1}  # nothing to write
    noted = {record.attribute for record in caplog.records if hasattr(record, "attribute")}
    assert {"name.formatted"} <= noted


def test_the_fast_paths_defer_what_the_upstream_does_not_hold() -> None:
    fast = FastPaths(served(WithoutFormattedName.holds))
    assert fast.user_values(entra.user("a@contoso.com")) is None  # carries name.formatted
    assert fast.user_changes(entra.patch(entra.op("Replace", "name.formatted", "X"))) is None
    everything = FastPaths(served(RestUpstream.holds))
    assert everything.user_changes(entra.patch(entra.op("Replace", "name.formatted", "X"))) == {
        UserField.FORMATTED_NAME: "X"
    }


async def test_filters_look_up_only_what_the_upstream_searches(
    narrowed: httpx.AsyncClient, fake: FakeModyo
) -> None:
    """An attribute held but not searched is evaluated over the listing; one not held at
    all is refused, naming it."""
    fake.seed_members(150)
    fake.reset_calls()
    body = (await narrowed.get("/Users", params={"filter": 'externalId eq "x"'})).json()
    assert body["totalResults"] == 0 and fake.calls == {"GET /team_members": 2}  # 2 pages
    fake.reset_calls()
    assert (await narrowed.get("/Users", params={"filter": 'userName eq "x"'})).status_code == 200
    assert fake.calls == {"GET /team_members": 1}  # searched
    response = await narrowed.get("/Users", params={"filter": 'name.formatted eq "x"'})
    assert "name.formatted" in assert_scim_error(response, 400, "invalidFilter")["detail"]
