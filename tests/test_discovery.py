"""Discovery (RFC 7644 §4) describes exactly what the bridge supports (R2)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests import entra
from tests.harness import BASE, assert_scim_error

pytestmark = pytest.mark.upstreams("rest", "scim")  # the bridge's own in either mode (F6)


async def test_service_provider_config(scim: httpx.AsyncClient) -> None:
    body = (await scim.get("/ServiceProviderConfig")).json()
    assert body["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]
    assert body["patch"] == {"supported": True}
    assert body["filter"] == {"supported": True, "maxResults": 100}
    assert body["bulk"]["supported"] is False
    assert body["sort"] == {"supported": False} and body["etag"] == {"supported": False}
    assert body["changePassword"] == {"supported": False}
    assert body["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert body["meta"]["location"] == f"{BASE}/ServiceProviderConfig"


async def test_resource_types_list_users_and_groups(scim: httpx.AsyncClient) -> None:
    body = (await scim.get("/ResourceTypes")).json()
    assert body["schemas"] == [entra.LIST_URN] and body["totalResults"] == 2
    by_name = {rt["name"]: rt for rt in body["Resources"]}
    assert by_name["User"]["endpoint"] == "/Users"
    assert by_name["User"]["schema"] == entra.USER_URN
    assert by_name["Group"]["schema"] == entra.GROUP_URN
    single = (await scim.get("/ResourceTypes/Group")).json()
    assert single["endpoint"] == "/Groups"
    assert_scim_error(await scim.get("/ResourceTypes/Device"), 404)


def _names(attributes: list[dict[str, Any]]) -> dict[str, set[str]]:
    return {a["name"]: {s["name"] for s in a.get("subAttributes", [])} for a in attributes}


async def test_schemas_advertise_only_what_modyo_holds(scim: httpx.AsyncClient) -> None:
    body = (await scim.get("/Schemas")).json()
    schemas = {schema["id"]: schema for schema in body["Resources"]}
    assert set(schemas) == {entra.USER_URN, entra.GROUP_URN}  # no enterprise extension
    assert _names(schemas[entra.USER_URN]["attributes"]) == {
        "userName": set(),
        "name": {"formatted", "familyName", "givenName"},
        "active": set(),
        "emails": {"value", "type", "primary"},
    }
    assert _names(schemas[entra.GROUP_URN]["attributes"]) == {
        "displayName": set(),
        "members": {"value", "$ref", "display", "type"},
    }
    user_name = schemas[entra.USER_URN]["attributes"][0]
    assert (user_name["name"], user_name["uniqueness"], user_name["required"]) == (
        "userName",
        "server",
        True,
    )
    emails = next(a for a in schemas[entra.USER_URN]["attributes"] if a["name"] == "emails")
    email_type = next(s for s in emails["subAttributes"] if s["name"] == "type")
    assert email_type["canonicalValues"] == ["work"]
    single = await scim.get(f"/Schemas/{entra.GROUP_URN}")
    assert single.json()["id"] == entra.GROUP_URN
    assert_scim_error(await scim.get("/Schemas/urn:nope"), 404)
