"""Logs an SRE can follow and that never leak: every secret masked in the line as written
(message, arguments, extra fields, exception text, traceback, uvicorn's own loggers), the
request id on every line written while serving a request (retry warnings included), an access
line with the client, operation, resource, status and Modyo cost, one debug line per Modyo call,
and the request id sent on to Modyo."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from bridge.logs import MASK, Redactor, mask
from bridge.modyo.fake import FakeModyo, FaultyModyo, mock_transport
from bridge.modyo.fake.base import FakeResponse
from tests import entra
from tests.harness import (
    MODYO_TOKEN,
    MODYO_URL,
    TOKEN,
    TOKEN_NAME,
    LogOutput,
    bridge_client,
    create_user,
    make_settings,
)
from tests.servers import answer_lifespan, uvicorn_serving

SECRET = 'scim-token-with-"quotes"-and-\\-0123'  # JSON escapes it: masked in both forms


def _emit_every_way(secret: str) -> None:
    log = logging.getLogger("bridge.test")
    log.warning(f"message {secret}")
    log.warning("argument %s", secret)
    log.warning("extra field", extra={"header": f"Bearer {secret}"})
    try:
        try:
            raise KeyError(secret)
        except KeyError as inner:
            raise RuntimeError(f"exception text {secret}") from inner
    except RuntimeError:
        log.exception("traceback")
    logging.getLogger("uvicorn.error").error("uvicorn says %s", secret)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_every_path_into_a_line_is_masked(log_output: LogOutput, fmt: str) -> None:
    log_output.configure(fmt=fmt, secrets=[SECRET, MODYO_TOKEN])
    _emit_every_way(SECRET)
    _emit_every_way(MODYO_TOKEN)
    text = log_output.text
    assert "message" in text and "argument" in text and "extra field" in text
    assert "RuntimeError" in text and "KeyError" in text and "uvicorn says" in text
    assert SECRET not in text and MODYO_TOKEN not in text
    assert "quotes" not in text  # nor its JSON-escaped form
    assert text.count(MASK) == 2 * 6  # message, argument, extra, 2 exception texts, uvicorn


def test_the_secret_list_takes_more_later_and_skips_tiny_values() -> None:
    redact = Redactor(["first-secret"])
    redact.add("later-secret")
    redact.add("ab")  # too short to mask without wrecking the line
    assert redact("first-secret later-secret ab") == f"{MASK} {MASK} ab"


def test_a_secret_is_masked_from_the_moment_its_setting_is_valid() -> None:
    """No ``configure_logging`` needed: the SCIM error renderer and ``check`` mask with the
    same function as the log formatter, and the settings feed it."""
    token, password = "modyo-token-only-this-test-42", "redis-pw-only-this-test"
    text = f"Bearer {token} redis://:{password}@redis:6379/0"
    assert mask(text) == text
    make_settings(
        modyo={"token": token},
        idempotency={"backend": "redis", "redis_url": f"redis://:{password}@redis:6379/0"},
    )
    assert mask(text) == f"Bearer {MASK} redis://:{MASK}@redis:6379/0"


def test_every_secret_setting_is_in_the_list() -> None:
    settings = make_settings()
    assert set(settings.secret_values()) >= {
        token.get_secret_value() for token in settings.scim.tokens.values()
    } | {MODYO_TOKEN}


async def test_an_exception_in_uvicorn_itself_is_masked(log_output: LogOutput) -> None:
    """uvicorn's own "Exception in ASGI application" line, with its traceback, goes through
    the same handler."""

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        raise RuntimeError(f"a library put the token {MODYO_TOKEN} in its message")

    log_output.configure(secrets=[MODYO_TOKEN])
    async with uvicorn_serving(broken) as port, httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/")
    assert response.status_code == 500
    [line] = [line for line in log_output.lines() if line["level"] == "error"]
    assert line["logger"] == "uvicorn.error"
    assert "Exception in ASGI application" in line["message"]
    assert "a library put the token" in line["exception"]
    assert MODYO_TOKEN not in log_output.text


class Recording(httpx.AsyncBaseTransport):
    """The in-process fake Modyo, keeping every request the bridge sent it."""

    def __init__(self, service: FaultyModyo) -> None:
        self.inner = mock_transport(service, MODYO_URL)
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)


async def test_every_line_of_a_request_carries_its_id_and_the_access_line_its_cost(
    fake: FakeModyo, log_output: LogOutput
) -> None:
    log_output.configure(secrets=[TOKEN, MODYO_TOKEN])
    async with bridge_client(FaultyModyo(fake), make_settings()) as scim:
        user = await create_user(scim, "trace@contoso.com")
        busy = FakeResponse(503, {"errors": ["busy"]})
        fake.script("GET /team_members/:id", busy, busy)  # two retries, then the answer
        response = await scim.get(f"/Users/{user['id']}", headers={"X-Request-Id": "trace-me-7"})
    request_id = response.headers["x-request-id"]  # the bridge's own, never the client's
    assert response.status_code == 200 and request_id != "trace-me-7"
    mine = [line for line in log_output.lines() if line.get("request_id") == request_id]
    retries = [line for line in mine if line["message"] == "retrying Modyo call"]
    assert [line["attempt"] for line in retries] == [1, 2]
    assert all(line["level"] == "warning" for line in retries)
    [access] = [line for line in mine if line["message"] == "request"]
    assert access == access | {
        "client": "127.0.0.1",
        "client_request_id": "trace-me-7",
        "token": TOKEN_NAME,
        "method": "GET",
        "path": f"/scim/Users/{user['id']}",
        "operation": "users.read",
        "resource_id": user["id"],
        "status": 200,
        "upstream_calls": 3,
        "upstream_retries": 2,
    }
    created = [line for line in log_output.lines() if line.get("operation") == "users.create"]
    assert created[0]["resource_id"] == user["id"]  # a create records what it made
    assert created[0]["upstream_calls"] == 1 and created[0]["upstream_retries"] == 0
    assert TOKEN not in log_output.text and MODYO_TOKEN not in log_output.text


async def test_debug_adds_one_line_per_modyo_call_without_bodies_or_tokens(
    modyo: FaultyModyo, log_output: LogOutput
) -> None:
    log_output.configure(level="debug")
    async with bridge_client(modyo, make_settings()) as scim:
        await create_user(scim, "debug.body@contoso.com")
    calls = [line for line in log_output.lines() if line["message"] == "Modyo call"]
    assert [(line["call"], line["status"]) for line in calls] == [("POST /team_members", "201")]
    assert calls[0]["level"] == "debug" and calls[0]["duration_ms"] >= 0
    assert calls[0]["request_id"]
    assert "debug.body" not in str(calls) and MODYO_TOKEN not in log_output.text
    assert TOKEN not in log_output.text
    assert MASK not in log_output.text  # nothing needed masking: no leak was hidden


async def test_info_has_no_per_call_lines(modyo: FaultyModyo, log_output: LogOutput) -> None:
    log_output.configure(level="info")
    async with bridge_client(modyo, make_settings()) as scim:
        await create_user(scim, "quiet@contoso.com")
    assert not [line for line in log_output.lines() if line["message"] == "Modyo call"]


@pytest.mark.parametrize("sent", ["caller-id-42", None, "not a valid id!", "x" * 65])
async def test_the_request_id_goes_on_to_every_modyo_call(
    modyo: FaultyModyo, sent: str | None
) -> None:
    recording = Recording(modyo)
    headers = {"X-Request-Id": sent} if sent else {}
    async with bridge_client(modyo, make_settings(), transport=recording) as scim:
        response = await scim.post("/Users", json=entra.user("relay@contoso.com"), headers=headers)
        group = await scim.post("/Groups", json=entra.group("Relay"))
    answered = response.headers["x-request-id"]
    assert answered != sent and len(answered) == 16  # always the bridge's own
    first = [r for r in recording.requests if r.url.path.endswith("/team_members")]
    assert first and {r.headers["x-request-id"] for r in first} == {answered}
    second = [r for r in recording.requests if r.url.path.endswith("/groups")]
    assert {r.headers["x-request-id"] for r in second} == {group.headers["x-request-id"]}
    assert group.headers["x-request-id"] != answered


def test_a_secret_url_contributes_its_password_in_every_written_form() -> None:
    import base64

    from bridge.config import redact_url

    with_password = make_settings(modyo={"proxy_url": "http://egress:p%40ss-word@proxy:3128"})
    basic = base64.b64encode(b"egress:p@ss-word").decode()
    assert {"p@ss-word", "p%40ss-word", basic} <= set(with_password.secret_values())
    without = make_settings(modyo={"proxy_url": "http://proxy.bank.example:3128"})
    assert "http://proxy.bank.example:3128" not in without.secret_values()  # not a secret
    assert redact_url("http://egress:p%40ss@proxy:3128") == "http://egress:***@proxy:3128"
    assert redact_url("http://proxy:3128") == "http://proxy:3128"
