"""The journal fed by the request flow (bridge/journal/middleware.py): one event per SCIM
write and per failed read, with its outcome, changes, members and Modyo calls, in both
upstream modes; the file it leaves verifies (docs/reference/journal.md)."""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from bridge import request_state
from bridge.config import JournalSettings, Settings
from bridge.edge.app import journal_for
from bridge.journal import EventFilter, Journal
from bridge.journal.keys import JournalKey
from bridge.journal.middleware import JournalMiddleware
from bridge.journal.verify import verify
from bridge.modyo.fake import Faults
from tests import entra
from tests.backends import DIFFERENCES, Backend
from tests.harness import TOKEN_NAME, LogOutput, assert_scim_error, create_group, create_user
from tests.test_idempotency import vanishing

pytestmark = pytest.mark.upstreams("rest", "scim")
KEY = "journal-key-0123456789-abcdefghijkl"


def journaled(backend: Backend, tmp_path: Path, **journal: Any) -> Settings:
    """The backend's settings with the journal on, its file in ``tmp_path``."""
    values = {"enabled": True, "key": KEY, "file": str(tmp_path / "journal.jsonl"), "replica": "a"}
    return backend.with_settings(journal={**values, **journal})


def opened(settings: Settings) -> Journal:
    journal = journal_for(settings, None)
    assert journal is not None
    return journal


async def events(journal: Journal, **where: Any) -> list[dict[str, Any]]:
    """The history's events, oldest first."""
    page = await journal.history.query(EventFilter(**where), limit=200)
    assert page.cursor is None
    return page.events[::-1]


def journal_files(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("journal.a.*.jsonl"))


def file_events(tmp_path: Path) -> list[dict[str, Any]]:
    lines = [line for path in journal_files(tmp_path) for line in path.read_text().splitlines()]
    return [event for event in map(json.loads, lines) if event["kind"] == "scim"]


async def test_every_write_is_an_event_and_a_read_only_when_it_fails(
    backend: Backend, tmp_path: Path
) -> None:
    settings = journaled(backend, tmp_path)
    journal = opened(settings)
    async with backend.client(settings=settings, journal=journal) as scim:
        alice = await create_user(scim, "alice@contoso.com", external_id="obj-alice")
        user_id = alice["id"]
        assert (await scim.get(f"/Users/{user_id}")).status_code == 200
        found = await scim.get("/Users", params={"filter": 'userName eq "alice@contoso.com"'})
        assert found.json()["totalResults"] == 1
        patch = entra.patch(
            entra.op("Replace", "name.givenName", "Alicia"), entra.op("Replace", "active", False)
        )
        assert (await scim.patch(f"/Users/{user_id}", json=patch)).status_code == 200
        replaced = entra.user("alice@contoso.com", external_id="obj-alice", given="Al")
        assert (await scim.put(f"/Users/{user_id}", json=replaced)).status_code == 200
        group = await create_group(scim, "Admins")
        group_id = group["id"]
        add = entra.patch(entra.op("Add", "members", entra.members(user_id)))
        assert (await scim.patch(f"/Groups/{group_id}", json=add)).status_code == 204
        remove = entra.patch(entra.op("Remove", f'members[value eq "{user_id}"]', no_value=True))
        assert (await scim.patch(f"/Groups/{group_id}", json=remove)).status_code == 204
        put = {**entra.group("Owners", external_id="obj-Admins"), "members": entra.members(user_id)}
        assert (await scim.put(f"/Groups/{group_id}", json=put)).status_code == 200
        assert_scim_error(await scim.get("/Users/no-such-user"), 404)
        twin = await scim.post("/Users", json=entra.user("alice@contoso.com"))
        assert_scim_error(twin, 409, "uniqueness")
        assert (await scim.delete(f"/Groups/{group_id}")).status_code == 204
        assert (await scim.delete(f"/Users/{user_id}")).status_code == 204

    seen = await events(journal)
    assert [(e["operation"], e["outcome"], e["status"]) for e in seen] == [
        ("users.create", "applied", 201),
        ("users.patch", "applied", 200),
        ("users.replace", "applied", 200),
        ("groups.create", "applied", 201),
        ("groups.patch", "applied", 204),
        ("groups.patch", "applied", 204),
        ("groups.replace", "applied", 200),
        ("users.read", "refused", 404),
        ("users.create", "refused", 409),
        ("groups.delete", "applied", 204),
        ("users.delete", "applied", 204),
    ]
    created, patched, _, group_created, added, removed, group_put, missing, twin_event = seen[:9]
    assert created["resource"] == {
        "id": user_id,
        "name": "alice@contoso.com",
        "external_id": "obj-alice",
    }
    assert created["resource_type"] == "User" and created["token"] == TOKEN_NAME
    assert {"attribute": "userName", "after": "alice@contoso.com"} in created["changes"]
    assert created["modyo_calls"], "the create's Modyo calls"
    for event in seen:
        assert event["request_id"] and event["replica"] == "a" and event["values"] == "full"
        for call in event["modyo_calls"]:
            assert user_id not in call["path"] and group_id not in call["path"]  # templates
            assert call["attempt"] >= 1 and call["ms"] >= 0
    before = DIFFERENCES["user PATCH before-values"].of(backend.api)
    given = {"attribute": "name.givenName", "op": "replace", "after": "Alicia"}
    assert ({**given, "before": "Test"} if before else given) in patched["changes"]
    assert group_created["resource"]["name"] == "Admins"
    assert added["members"] == {"added": [user_id], "removed": [], "added_count": 1,
                                "removed_count": 0}  # fmt: skip
    assert removed["members"]["removed"] == [user_id] and removed["members"]["added"] == []
    assert group_put["members"]["added"] == [user_id]
    assert {"attribute": "displayName", "after": "Owners"} in group_put["changes"]
    assert missing["error"]["detail"] and missing["resource_type"] == "User"
    assert twin_event["error"]["scim_type"] == "uniqueness"
    assert "reason" not in twin_event

    written = file_events(tmp_path)  # the sink holds exactly what the history shows
    assert [(e["request_id"], e["outcome"]) for e in written] == [
        (e["request_id"], e["outcome"]) for e in seen
    ]
    report = verify(journal_files(tmp_path), [JournalKey.from_secret(KEY)])
    assert report.intact, report.findings


async def test_a_failed_write_carries_its_reason_in_the_event_and_the_access_line(
    backend: Backend, tmp_path: Path, log_output: LogOutput
) -> None:
    log_output.configure()
    settings = journaled(backend, tmp_path)
    journal = opened(settings)
    failing = backend.faulty(Faults(error_rate=1.0))
    async with backend.client(modyo=failing, settings=settings, journal=journal) as scim:
        answer = await scim.post("/Users", json=entra.user("bob@contoso.com"))
        assert answer.status_code >= 500
        detail = answer.json()["detail"]
        assert (await scim.get("/Users/12345")).status_code >= 500  # a failed read
    write, read = await events(journal)
    assert write["outcome"] == "failed" and write["reason"] == detail
    assert write["status"] == answer.status_code and "error" not in write
    assert write["resource"]["name"] == "bob@contoso.com"
    statuses = [call["status"] for call in write["modyo_calls"]]
    assert statuses and all(status >= 500 for status in statuses)
    assert read["operation"] == "users.read" and read["outcome"] == "failed"
    [access] = [
        line
        for line in log_output.lines()
        if line["message"] == "request" and line["operation"] == "users.create"
    ]
    assert access["level"] == "warning" and access["reason"] == detail


async def test_a_refused_write_is_journaled_without_a_modyo_call(
    backend: Backend, tmp_path: Path
) -> None:
    settings = journaled(backend, tmp_path)
    journal = opened(settings)
    async with backend.client(settings=settings, journal=journal) as scim:
        answer = await scim.post("/Users", json={"schemas": [entra.USER_URN]})
        assert_scim_error(answer, 400, "invalidValue")
        bad = await scim.patch("/Users/123", content=b"{not json")
        assert bad.status_code == 400
    first, second = await events(journal)
    assert first["outcome"] == "refused" and first["operation"] == "users.create"
    assert first["error"]["scim_type"] == "invalidValue" and first["modyo_calls"] == []
    assert second["outcome"] == "refused" and second["resource"] == {"id": "123"}


async def test_an_answer_replayed_to_a_retry_is_journaled_as_replayed(
    backend: Backend, tmp_path: Path
) -> None:
    settings = journaled(backend, tmp_path)
    journal = opened(settings)
    bridge = backend.client(settings=settings, journal=journal)
    body = entra.user("carol@contoso.com")
    async with bridge as scim:
        await vanishing(bridge.app, "POST", "/Users", body)  # its client left: answer kept
        retry = await scim.post("/Users", json=body)
        assert retry.status_code == 201 and retry.headers["x-idempotent-replay"] == "true"
    lost, replayed = await events(journal)
    assert lost["outcome"] == "applied" and lost["modyo_calls"]
    assert replayed["outcome"] == "replayed" and replayed["status"] == 201
    assert replayed["modyo_calls"] == [] and replayed["operation"] == "users.create"
    assert replayed["resource"] == {"id": lost["resource"]["id"]}


async def test_without_the_journal_nothing_is_journaled_and_answers_are_the_same(
    backend: Backend, tmp_path: Path
) -> None:
    settings = journaled(backend, tmp_path)
    journal = opened(settings)
    answers: list[tuple[int, int, Any]] = []
    for bridge in (backend.client(), backend.client(settings=settings, journal=journal)):
        async with bridge as scim:
            created = await scim.post("/Users", json=entra.user(f"d{len(answers)}@contoso.com"))
            missing = await scim.get("/Users/no-such-user")
            answers.append((created.status_code, missing.status_code, missing.json()))
    assert answers[0] == answers[1]
    assert len(await events(journal)) == 2


@pytest.mark.parametrize("outcome", ["planned", "held"])
async def test_a_write_marked_planned_or_held_is_journaled_so(outcome: str) -> None:
    """What the dry run and the brake set (``RequestState.withheld``) is the event's outcome."""
    journal = Journal(JournalSettings(enabled=True), replica="a", stream=io.BytesIO())

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        state = request_state.current()
        assert state is not None
        state.operation, state.resource_type, state.withheld = "users.create", "User", outcome
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    scope = {"type": "http", "method": "POST", "path": "/scim/Users", "headers": []}
    with request_state.serving("r-1"):
        await JournalMiddleware(app, journal)(scope, receive, send)
    [event] = await events(journal)
    assert (event["outcome"], event["status"], event["operation"]) == (outcome, 202, "users.create")


class Refused(Exception):
    pass


async def refusal(request: Request, exc: Exception) -> Response:
    return Response(f"refused: {exc}", status_code=409)


async def not_here(request: Request, exc: Exception) -> Response:
    return Response("not here", status_code=404)


@pytest.mark.parametrize(
    ("raised", "status"), [(Refused("taken"), 409), (HTTPException(404), 404), (KeyError(), None)]
)
async def test_an_error_raised_inside_is_answered_by_its_handler_and_journaled_so(
    raised: Exception, status: int | None
) -> None:
    """The journal answers an error with its handler (the work of an exception middleware,
    done only when there is an error), so that the event has the answer's status; an error
    without a handler goes on up, journaled as failed."""
    journal = Journal(JournalSettings(enabled=True), replica="a", stream=io.BytesIO())
    middleware = JournalMiddleware(raising(raised), journal, {Refused: refusal, 404: not_here})
    sent: list[Message] = []
    if status is None:
        with pytest.raises(KeyError):
            await serve_one(middleware, sent)
    else:
        await serve_one(middleware, sent)
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == (
        [status] if status else []
    )
    [event] = await events(journal)
    outcome = "refused" if status else "failed"
    assert (event["outcome"], event.get("status")) == (outcome, status)


async def test_an_error_after_the_answer_began_goes_on_up() -> None:
    journal = Journal(JournalSettings(enabled=True), replica="a", stream=io.BytesIO())

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise Refused("too late")

    sent: list[Message] = []
    with pytest.raises(Refused):
        await serve_one(JournalMiddleware(app, journal, {Refused: refusal}), sent)
    assert [m["status"] for m in sent] == [200]
    [event] = await events(journal)
    assert (event["outcome"], event["status"]) == ("failed", 200)


def raising(exc: Exception) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise exc

    return app


async def serve_one(app: JournalMiddleware, sent: list[Message]) -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/scim/Users", "headers": []}
    with request_state.serving("r-1"):
        await app(scope, receive, send)


async def test_hashed_values_keep_names_out_of_the_journal_and_the_history(
    backend: Backend, tmp_path: Path
) -> None:
    settings = journaled(backend, tmp_path, values="hashed")
    journal = opened(settings)
    async with backend.client(settings=settings, journal=journal) as scim:
        await create_user(scim, "erin@contoso.com", given="Erin", external_id="obj-erin")
        twin = await scim.post(
            "/Users", json=entra.user("erin@contoso.com", external_id="obj-erin")
        )
        assert_scim_error(twin, 409, "uniqueness")
    hashed = journal.privacy.hashed("erin@contoso.com")
    created, refused = await events(journal, text=hashed)
    assert created["resource"]["name"] == refused["resource"]["name"] == hashed
    assert {"attribute": "name.givenName", "after": journal.privacy.hashed("Erin")} in created[
        "changes"
    ]
    written = "".join(path.read_text() for path in journal_files(tmp_path))
    assert "erin@contoso.com" not in written.lower() and '"Erin"' not in written
    assert hashed in written
