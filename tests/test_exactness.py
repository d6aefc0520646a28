"""What independent checks found (issue: exact to the RFC and to Entra): the one email is the
primary one, hostile input is a SCIM 400 (never a 500), every path form Entra produces works
in both positions, and the bridge is not stricter than Modyo about addresses."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from bridge.modyo.fake import FakeModyo
from bridge.modyo.fake.state import FakeResponse
from bridge.scim.errors import MAX_DETAIL
from bridge.scim.unheld import forget_noted
from tests import entra
from tests.backends import Backend, differs
from tests.conftest import assert_scim_error, create_group, create_user

# Upstream-neutral edge checks (hostile bodies, surrogates, bounded details) run in rest mode;
# what reaches Modyo (PATCH forms, booleans, members, addresses) runs in both.
BOTH = pytest.mark.upstreams("rest", "scim")

# --------------------------------------------------------------------------- the primary email


async def test_the_one_email_is_rendered_primary_as_microsoft_documents(
    scim: httpx.AsyncClient,
) -> None:
    """Microsoft's create-user response echoes ``"primary": true`` on the work email."""
    created = await create_user(scim, "ana@contoso.com")
    assert created["emails"] == [{"value": "ana@contoso.com", "type": "work", "primary": True}]
    body = entra.user("bo@contoso.com")
    body["emails"][0]["primary"] = False  # whatever primary a request sends is accepted
    response = await scim.post("/Users", json=body)
    assert response.status_code == 201
    assert response.json()["emails"][0]["primary"] is True


async def test_schemas_list_emails_primary(scim: httpx.AsyncClient) -> None:
    schemas = (await scim.get(f"/Schemas/{entra.USER_URN}")).json()
    emails = next(a for a in schemas["attributes"] if a["name"] == "emails")
    assert {sub["name"] for sub in emails["subAttributes"]} == {"value", "type", "primary"}


# --------------------------------------------------------------------------- hostile bodies

DEEP = 10_000
HOSTILE_BODIES = {
    "deep-array-closed": b'{"a": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "deep-array-open": b'{"a": ' + b"[" * DEEP,
    "deep-object-closed": b'{"a": ' + b'{"b": ' * DEEP + b"1" + b"}" * (DEEP + 1),
    "deep-object-open": b'{"a": ' * DEEP,
    "top-level-deep": b"[" * DEEP + b"]" * DEEP,
    "just-deeper-than-allowed": b'{"a": ' * 33 + b"1" + b"}" * 33,
}
WRITES = [("POST", "/Users"), ("POST", "/Groups"), ("PUT", "/Users/1"), ("PUT", "/Groups/1"),
          ("PATCH", "/Users/1"), ("PATCH", "/Groups/1"), ("POST", "/Users/.search")]  # fmt: skip


@pytest.mark.parametrize("content", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
@pytest.mark.parametrize(("method", "path"), WRITES)
async def test_deep_json_is_400_invalid_syntax_without_a_traceback(
    scim: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    content: bytes,
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await scim.request(
            method, path, content=content, headers={"Content-Type": "application/scim+json"}
        )
    assert_scim_error(response, 400, "invalidSyntax")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert (await scim.get("/ServiceProviderConfig")).status_code == 200  # still serving


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", "/Groups", b'{"schemas": ["' + entra.GROUP_URN.encode() + b'"], '
                            b'"displayName": "\\ud800"}'),
        ("POST", "/Users", b'{"userName": "a\\udfffb@contoso.com"}'),
        ("PATCH", "/Users/1", b'{"schemas": ["' + entra.PATCH_URN.encode() + b'"], '
                              b'"Operations": [{"op": "add", "path": "\\ud83d", "value": 1}]}'),
    ],
)  # fmt: skip
async def test_a_lone_surrogate_is_400_invalid_value(
    scim: httpx.AsyncClient, fake: FakeModyo, method: str, path: str, content: bytes
) -> None:
    response = await scim.request(method, path, content=content)
    assert "Unicode" in assert_scim_error(response, 400, "invalidValue")["detail"]
    assert not fake.calls  # refused before anything reached Modyo


async def test_an_error_detail_quotes_a_bounded_part_of_what_was_sent(
    scim: httpx.AsyncClient,
) -> None:
    """``got '…'`` echoed a whole 60 KB ``startIndex`` (or a megabyte of body) back."""
    response = await scim.get("/Users", params={"startIndex": "9x" * 30_000})
    detail = assert_scim_error(response, 400, "invalidValue")["detail"]
    assert detail.startswith("startIndex must be an integer, got '9x9x")
    assert len(detail) == MAX_DETAIL and detail.endswith("\u2026")
    search = {"schemas": [entra.SEARCH_URN], "count": ["x" * 200] * 4_000}
    response = await scim.post("/Users/.search", json=search)
    assert len(assert_scim_error(response, 400, "invalidValue")["detail"]) == MAX_DETAIL


@BOTH
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_not_json(
    scim: httpx.AsyncClient, backend: Backend, constant: str
) -> None:
    """Python's reader takes them, RFC 8259 §6 does not: a PATCH of an unheld attribute to
    ``NaN`` was answered 200, a search's ``count: NaN`` 400 for the wrong reason."""
    user = await create_user(scim, "nan@contoso.com")
    operation = f'{{"op": "add", "path": "nickName", "value": {constant}}}'
    patch = f'{{"schemas": ["{entra.PATCH_URN}"], "Operations": [{operation}]}}'
    search = f'{{"schemas": ["{entra.SEARCH_URN}"], "count": {constant}}}'
    for response in (
        await scim.patch(f"/Users/{user['id']}", content=patch),
        await scim.post("/Users/.search", content=search),
    ):
        detail = assert_scim_error(response, 400, "invalidSyntax")["detail"]
        assert detail == f"the request body is not valid JSON: {constant} is not a JSON value"
    assert backend.calls()["user.update"] == 0


@pytest.mark.parametrize("path", ["/Users", "/Groups"])
@pytest.mark.parametrize("value", ['"\\ud800"', '"a\\udfffb"', '"\\ud83d"'])
async def test_a_lone_surrogate_in_a_filter_value_is_400_invalid_filter(
    scim: httpx.AsyncClient, fake: FakeModyo, path: str, value: str
) -> None:
    """The body check cannot see it: the filter is a plain string until its parser reads
    the escape. It was a 500 (the lookup could not be encoded for Modyo)."""
    expression = f"{'userName' if path == '/Users' else 'displayName'} eq {value}"
    search = {"schemas": [entra.SEARCH_URN], "filter": expression}
    for response in (
        await scim.get(path, params={"filter": expression}),
        await scim.post(f"{path}/.search", json=search),
    ):
        assert "Unicode" in assert_scim_error(response, 400, "invalidFilter")["detail"]
    assert not fake.calls


@BOTH
@pytest.mark.parametrize("value", ["yes", "1", "on", "no", 1, 0, "", "TRUE!", None])
async def test_active_must_be_a_boolean(
    scim: httpx.AsyncClient, backend: Backend, value: Any
) -> None:
    """Only JSON booleans and Entra's "True"/"False" strings (any case) are booleans."""
    body = entra.user("b@contoso.com")
    body["active"] = value
    if value is None:  # an explicit null is "not given": the default (active) applies
        assert (await scim.post("/Users", json=body)).status_code == 201
        return
    error = assert_scim_error(await scim.post("/Users", json=body), 400, "invalidValue")
    assert error["detail"] == "active must be a boolean (true or false)"
    user = await create_user(scim, "c@contoso.com")
    for patch in (
        entra.patch(entra.op("Replace", "active", value)),
        entra.patch(entra.op("replace", value={"active": value})),
    ):
        refused = await scim.patch(f"/Users/{user['id']}", json=patch)
        assert assert_scim_error(refused, 400, "invalidValue")["detail"] == (
            "active must be a boolean (true or false)"
        )
    stored = backend.user(user["id"])
    assert stored is not None and stored.active is True


@BOTH
@pytest.mark.parametrize("value", ["True", "FALSE", "false", "tRuE", True, False])
async def test_entra_booleans_are_booleans(scim: httpx.AsyncClient, value: Any) -> None:
    user = await create_user(scim, "d@contoso.com")
    patched = await scim.patch(
        f"/Users/{user['id']}", json=entra.patch(entra.op("Replace", "active", value))
    )
    assert patched.status_code == 200
    assert patched.json()["active"] is (str(value).lower() == "true")


@pytest.mark.parametrize(
    "body",
    [
        {"userName": 5, "emails": [{"value": "a@b.c"}]},
        {"userName": "x@contoso.com", "emails": {"value": "a@b.c"}},
        {"userName": "x@contoso.com", "name": "Ann"},
        {"userName": "x@contoso.com", "emails": [{"value": "x@contoso.com", "primary": "maybe"}]},
    ],
)
async def test_error_details_speak_scim_not_pydantic(
    scim: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    body["schemas"] = [entra.USER_URN]
    detail = assert_scim_error(await scim.post("/Users", json=body), 400, "invalidValue")["detail"]
    for pydantic_words in ("validation error", "[type=", "Input should", "pydantic", "For further"):
        assert pydantic_words not in detail, detail
    assert detail.split(" ", 1)[0] in {"userName", "emails", "name", "emails[0].primary"}, detail


@BOTH
@pytest.mark.parametrize(
    "members", [[{"display": "Ana"}], [{"value": 12}], [{"value": ""}], [{"value": True}]]
)
async def test_a_member_without_a_string_value_is_400(
    scim: httpx.AsyncClient, backend: Backend, members: list[dict[str, Any]]
) -> None:
    body = entra.group("Sales") | {"members": members}
    assert_scim_error(await scim.post("/Groups", json=body), 400, "invalidValue")
    group = await create_group(scim, "Support")
    replace = entra.group("Support") | {"members": members}
    assert_scim_error(await scim.put(f"/Groups/{group['id']}", json=replace), 400, "invalidValue")
    for operation in (entra.op("Add", "members", members), entra.op("Remove", "members", members)):
        patched = await scim.patch(f"/Groups/{group['id']}", json=entra.patch(operation))
        assert_scim_error(patched, 400, "invalidValue")
    assert [group.display_name for group in backend.held_groups()] == ["Support"]


# --------------------------------------------------------------------------- path forms

PATH_FORMS = [
    ("userName", "new@contoso.com", lambda u: u["userName"]),
    ("externalId", "obj-9", lambda u: u["externalId"]),
    ("name.givenName", "Ann", lambda u: u["name"]["givenName"]),
    ("name.familyName", "Lee", lambda u: u["name"]["familyName"]),
    ("name.formatted", "Ann Lee", lambda u: u["name"]["formatted"]),
    ('emails[type eq "work"].value', "ann@contoso.com", lambda u: u["emails"][0]["value"]),
    ("emails.value", "ann2@contoso.com", lambda u: u["emails"][0]["value"]),
    (f"{entra.USER_URN}:userName", "urn@contoso.com", lambda u: u["userName"]),
    (f"{entra.USER_URN}:name.givenName", "Urn", lambda u: u["name"]["givenName"]),
    ("NAME.GIVENNAME", "Upper", lambda u: u["name"]["givenName"]),
    ("active", False, lambda u: u["active"]),
]


@BOTH
@pytest.mark.parametrize("position", ["path", "key"])
@pytest.mark.parametrize("op", ["Add", "Replace", "add", "replace"])
@pytest.mark.parametrize(("path", "value", "read"), PATH_FORMS, ids=[p[0] for p in PATH_FORMS])
async def test_every_path_form_works_in_both_positions(
    scim: httpx.AsyncClient,
    backend: Backend,
    position: str,
    op: str,
    path: str,
    value: Any,
    read: Any,
) -> None:
    """As a ``path``, and as a key of a path-less value (Entra's aadOptscim062020 form,
    entra-scim-behaviour.md §0 item 5): applied, and read back by a GET. (scim mode: a
    change of externalId is 400 in either position, the difference "externalId patchable".)"""
    user = await create_user(scim, "start@contoso.com")
    operation = (
        entra.op(op, path, value) if position == "path" else entra.op(op, value={path: value})
    )
    patched = await scim.patch(f"/Users/{user['id']}", json=entra.patch(operation))
    if path == "externalId" and not differs("externalId patchable", backend.api):
        assert_scim_error(patched, 400, "invalidValue")
        assert (await scim.get(f"/Users/{user['id']}")).json()["externalId"] == user["externalId"]
        return
    assert patched.status_code == 200, patched.text
    assert read(patched.json()) == value
    assert read((await scim.get(f"/Users/{user['id']}")).json()) == value


@BOTH
async def test_entra_s_multi_attribute_replace_applies_every_key(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    """The exact body that was answered 200 while the email stayed unchanged."""
    user = await create_user(scim, "multi@contoso.com")
    body = entra.patch(
        entra.op(
            "Replace",
            value={'emails[type eq "work"].value': "new@contoso.com", "name.givenName": "Ann"},
        )
    )
    assert (await scim.patch(f"/Users/{user['id']}", json=body)).status_code == 200
    member = backend.user(user["id"])
    assert member is not None and (member.email, member.given) == ("new@contoso.com", "Ann")


@BOTH
@pytest.mark.parametrize("position", ["path", "key"])
async def test_an_unheld_attribute_is_ignored_and_logged_once_in_both_positions(
    scim: httpx.AsyncClient, backend: Backend, caplog: pytest.LogCaptureFixture, position: str
) -> None:
    forget_noted()
    user = await create_user(scim, "unheld@contoso.com")
    department = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
    with caplog.at_level(logging.WARNING, logger="bridge.scim"):
        for path in ("nickName", department, "nickName"):
            operation = (
                entra.op("Add", path, "x")
                if position == "path"
                else entra.op("Add", value={path: "x"})
            )
            response = await scim.patch(f"/Users/{user['id']}", json=entra.patch(operation))
            assert response.status_code == 200
    noted = [record.attribute for record in caplog.records if hasattr(record, "attribute")]
    assert sorted(noted) == sorted(["nickName", department])
    assert backend.calls()["user.update"] == 0


@BOTH
@pytest.mark.parametrize("key", ['emails[type eq "work"', "name..givenName", "emails[].value"])
async def test_a_key_that_is_not_a_path_is_400_invalid_path(
    scim: httpx.AsyncClient, key: str
) -> None:
    user = await create_user(scim, "bad@contoso.com")
    response = await scim.patch(
        f"/Users/{user['id']}", json=entra.patch(entra.op("replace", value={key: "x"}))
    )
    assert_scim_error(response, 400, "invalidPath")


# --------------------------------------------------------------------------- addresses


@BOTH
@pytest.mark.parametrize("address", ["user@corp.local", "ann@example.test", "x@localhost"])
async def test_special_use_domains_are_modyo_s_call(
    scim: httpx.AsyncClient, backend: Backend, address: str
) -> None:
    """Hybrid AD forests use corp.local: the bridge checks the shape only."""
    created = await create_user(scim, "ad@contoso.com", email=address)
    assert created["emails"][0]["value"] == address
    stored = backend.user(created["id"])
    assert stored is not None and stored.email == address


@BOTH
@pytest.mark.parametrize("address", ["a b@x.com", "a@b@c", "@x.com", "x@", "noat", "a\x01@x.com"])
async def test_what_is_not_an_address_is_400(
    scim: httpx.AsyncClient, backend: Backend, address: str
) -> None:
    response = await scim.post("/Users", json=entra.user("e@contoso.com", email=address))
    detail = assert_scim_error(response, 400, "invalidValue")["detail"]
    assert detail.startswith("emails[0].value must be an email address"), detail
    assert "user.create" not in backend.calls()


async def test_modyo_s_refusal_of_an_address_names_the_attribute(
    scim: httpx.AsyncClient, fake: FakeModyo
) -> None:
    fake.script(
        "POST /team_members",
        FakeResponse(409, {"errors": [{"field": "email", "messages": ["is invalid"],
                                       "details": [{"error": "invalid"}]}]}),
    )  # fmt: skip
    response = await scim.post("/Users", json=entra.user("f@contoso.com", email="f@corp.local"))
    detail = assert_scim_error(response, 400, "invalidValue")["detail"]
    assert detail.startswith('emails[type eq "work"].value: ') and "is invalid" in detail
