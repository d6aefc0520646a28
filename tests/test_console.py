"""The admin console over its real ASGI app (the internal listener's): sign-in, sessions,
CSRF, security headers, the pages' content, exports, and the settings behind it. The same
console in a real browser: tests/test_console_browser.py."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import bridge.scim.auth
from bridge.config_loading import ConfigError, load_settings
from bridge.console import console_routes
from bridge.console.headers import CSP
from bridge.console.session import COOKIE, Sessions
from bridge.console.status import checks
from bridge.edge.app import create_app
from bridge.edge.readiness import Readiness
from bridge.journal.history import EventFilter, MemoryHistory
from tests.console import (
    ADMIN_NAME,
    ADMIN_TOKEN,
    OTHER_ADMIN_TOKEN,
    console_app,
    console_settings,
    csrf_of,
    history_of,
    journal_event,
    sign_in,
)
from tests.harness import MODYO_TOKEN, TOKEN, app_client, asgi_client, make_settings

PAGES = ["/", "/activity", "/errors", "/charts", "/configuration", "/safety",
         "/activity.csv", "/activity.jsonl", "/events/req-1"]  # fmt: skip


@pytest.fixture
def history() -> MemoryHistory:
    return history_of(
        journal_event("req-1", minutes_ago=90),
        journal_event("req-2", "users.patch", "refused", status=409, minutes_ago=30),
        journal_event("req-3", "groups.patch", "failed", status=503, name="Admins", retries=2),
        journal_event("req-4", "users.create", "refused", status=409, name="=HYPERLINK(1)"),
    )


@pytest.fixture
async def client(history: MemoryHistory) -> AsyncIterator[httpx.AsyncClient]:
    app = console_app(console_settings(), history)
    async with app_client(app, None, "http://internal") as client:
        yield client


async def signed_in(client: httpx.AsyncClient) -> httpx.AsyncClient:
    assert (await sign_in(client)).status_code == 303
    return client


async def test_without_admin_tokens_the_console_is_off_and_says_so() -> None:
    app = console_app(make_settings(), MemoryHistory(10))
    async with app_client(app, None, "http://internal") as client:
        root = await client.get("/")
        assert root.status_code == 200 and "console is off: set admin.tokens" in root.text
        assert (await client.get("/console/")).status_code == 404
        assert (await client.get("/console/sign-in")).status_code == 404


@pytest.mark.parametrize("page", PAGES)
async def test_every_page_without_a_session_is_sent_to_sign_in(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get("/console" + page)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in"
    assert response.headers["content-security-policy"] == CSP


async def test_root_leads_to_the_console(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 303 and response.headers["location"] == "/console/"


async def test_sign_in_sets_a_strict_http_only_expiring_cookie_and_never_shows_the_token(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/console/"
    cookie = next(
        value for value in response.headers.get_list("set-cookie") if value.startswith(COOKIE)
    )
    flags = [flag.strip().lower() for flag in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
    assert "max-age=3600" in flags
    assert "secure" not in flags  # plain HTTP: a Secure cookie would never come back
    assert ADMIN_TOKEN not in cookie
    overview = await client.get("/console/")
    assert overview.status_code == 200 and ADMIN_NAME in overview.text
    for page in PAGES:
        assert ADMIN_TOKEN not in (await client.get("/console" + page)).text
    assert ADMIN_TOKEN not in caplog.text and "console sign-in: ops-alice" in caplog.text


async def test_under_tls_the_cookie_is_secure(history: MemoryHistory) -> None:
    app = console_app(console_settings(), history)
    async with app_client(app, None, "https://internal") as client:
        response = await sign_in(client)
    cookie = next(
        value for value in response.headers.get_list("set-cookie") if value.startswith(COOKIE)
    )
    assert "secure" in [flag.strip().lower() for flag in cookie.split(";")]


@pytest.mark.parametrize("page", PAGES)
async def test_every_page_carries_the_security_headers(
    client: httpx.AsyncClient, page: str
) -> None:
    await signed_in(client)
    response = await client.get("/console" + page)
    assert response.status_code in (200, 404)
    assert response.headers["content-security-policy"] == (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text


async def test_a_wrong_token_is_refused_and_failures_are_throttled(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bridge.scim.auth, "now", lambda: 1_000.0)  # one minute throughout
    for _ in range(5):  # admin.sign_in_failures_per_minute
        refused = await sign_in(client, "not-the-admin-token-0123456789-abcdefgh")
        assert refused.status_code == 401 and "not an admin token" in refused.text
        assert COOKIE + "=" not in refused.headers.get("set-cookie", "")
    throttled = await sign_in(client)  # even the right token, until the minute ends
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert (await client.get("/console/")).status_code == 303


async def test_a_scim_token_does_not_sign_in(client: httpx.AsyncClient) -> None:
    assert (await sign_in(client, TOKEN)).status_code == 401


async def test_sign_in_without_or_with_a_wrong_csrf_token_is_refused(
    client: httpx.AsyncClient,
) -> None:
    form = await client.get("/console/sign-in")
    token = csrf_of(form.text)
    for fields in ({"token": ADMIN_TOKEN}, {"token": ADMIN_TOKEN, "csrf": token[:-1] + "x"}):
        refused = await client.post("/console/sign-in", data=fields)
        assert refused.status_code == 403
        assert COOKIE + "=" not in refused.headers.get("set-cookie", "")
    client.cookies.clear()  # the field without its cookie: a cross-site post
    refused = await client.post("/console/sign-in", data={"token": ADMIN_TOKEN, "csrf": token})
    assert refused.status_code == 403


async def test_sign_out_needs_the_sessions_csrf_token(client: httpx.AsyncClient) -> None:
    await signed_in(client)
    page = await client.get("/console/")
    for fields in ({"other": "1"}, {"csrf": "0" * 64}):
        refused = await client.post("/console/sign-out", data=fields)
        assert refused.status_code == 403
        assert (await client.get("/console/")).status_code == 200  # still signed in
    signed_out = await client.post("/console/sign-out", data={"csrf": csrf_of(page.text)})
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/console/sign-in"
    assert (await client.get("/console/")).status_code == 303


async def test_another_sessions_csrf_token_is_refused(history: MemoryHistory) -> None:
    app = console_app(console_settings(), history)
    async with (
        asgi_client(app, token=None, base_url="http://internal") as first,
        asgi_client(app, token=None, base_url="http://internal") as second,
    ):
        await signed_in(first)
        await signed_in(second)
        theirs = csrf_of((await first.get("/console/")).text)
        assert (await second.post("/console/sign-out", data={"csrf": theirs})).status_code == 403


async def test_forged_expired_and_revoked_sessions_are_refused() -> None:
    settings = console_settings(admin={"tokens": {"a": ADMIN_TOKEN, "b": OTHER_ADMIN_TOKEN}})
    now = [1_000_000.0]
    sessions = Sessions(settings.admin.tokens, 1, clock=lambda: now[0])
    cookie, _ = sessions.issue("a")
    assert sessions.check(cookie) is not None
    _, expires, nonce, mac = cookie.split(".")
    assert sessions.check(f"b.{expires}.{nonce}.{mac}") is None  # another admin's name
    assert sessions.check(f"a.{int(expires) + 600}.{nonce}.{mac}") is None  # a later expiry
    assert sessions.check(cookie[:-1] + ("0" if cookie[-1] != "0" else "1")) is None
    assert sessions.check("a" * 1000) is None
    now[0] += 60
    assert sessions.check(cookie) is None  # expired
    revoked = Sessions({"b": settings.admin.tokens["b"]}, 1, clock=lambda: 0.0)
    assert revoked.check(cookie) is None  # its token removed from admin.tokens


async def test_a_large_or_foreign_form_is_refused_unread(client: httpx.AsyncClient) -> None:
    large = await client.post(
        "/console/sign-in", content=b"a=" + b"x" * 5000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert large.status_code == 413
    foreign = await client.post("/console/sign-in", json={"token": ADMIN_TOKEN})
    assert foreign.status_code == 415


async def test_activity_lists_newest_first_and_filters(client: httpx.AsyncClient) -> None:
    await signed_in(client)
    page = (await client.get("/console/activity")).text
    assert page.index("req-4") < page.index("req-3") < page.index("req-2") < page.index("req-1")
    refused = (await client.get("/console/activity?outcome=refused")).text
    assert "req-2" in refused and "req-4" in refused and "req-3" not in refused
    groups = (await client.get("/console/activity?resource_type=Group")).text
    assert "req-3" in groups and "req-1" not in groups
    alice = (await client.get("/console/activity?text=ALICE@contoso&operation=users.patch")).text
    assert "req-2" in alice and "req-1" not in alice
    since = (datetime.now(UTC) - timedelta(minutes=60)).strftime("%Y-%m-%dT%H:%M")
    recent = (await client.get(f"/console/activity?since={since}")).text
    assert "req-2" in recent and "req-1" not in recent
    bad = (await client.get("/console/activity?outcome=nope&since=yesterday")).text
    assert "Ignored (not valid): outcome, since" in bad and "req-1" in bad


async def test_activity_is_paginated() -> None:
    history = history_of(*(journal_event(f"req-{n}", minutes_ago=100 - n) for n in range(25)))
    app = console_app(console_settings(admin={"page_size": 10}), history)
    async with app_client(app, None, "http://internal") as client:
        await signed_in(client)
        seen: list[str] = []
        url: str | None = "/console/activity"
        while url:
            page = (await client.get(url)).text
            seen += [f"req-{n}" for n in range(25) if f'/events/req-{n}"' in page]
            marker = 'id="older" href="'
            url = None
            if marker in page:
                url = page.split(marker)[1].split('"')[0].replace("&amp;", "&")
        assert sorted(seen) == sorted(f"req-{n}" for n in range(25)) and len(seen) == 25
        stale = await client.get("/console/activity?cursor=not-a-cursor")
        assert stale.status_code == 200 and "not valid any more" in stale.text


async def test_an_events_page_shows_its_modyo_calls(client: httpx.AsyncClient) -> None:
    await signed_in(client)
    page = await client.get("/console/events/req-3")
    assert page.status_code == 200
    assert "modyo_unreachable" in page.text and "Admins" in page.text
    assert page.text.count('<tr class="call">') == 3  # the first attempt and two retries
    assert (await client.get("/console/events/req-404")).status_code == 404
    assert (await client.get("/console/events/%3Cscript%3E")).status_code == 404


async def test_the_csv_export_is_the_filtered_events_defused(client: httpx.AsyncClient) -> None:
    await signed_in(client)
    response = await client.get("/console/activity.csv?outcome=refused")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["request_id"] for row in rows] == ["req-4", "req-2"]
    assert rows[0]["resource_name"] == "'=HYPERLINK(1)"  # a formula, defused
    assert rows[1]["resource_name"] == "alice@contoso.com"
    assert rows[1]["detail"] == "userName is already taken" and rows[1]["status"] == "409"


async def test_the_json_lines_export_holds_the_events_as_recorded(
    client: httpx.AsyncClient, history: MemoryHistory
) -> None:
    await signed_in(client)
    response = await client.get("/console/activity.jsonl?resource_type=Group")
    lines = [json.loads(line) for line in response.text.splitlines()]
    expected = (await history.query(EventFilter(resource_types=frozenset({"Group"})))).events
    assert lines == expected and lines[0]["request_id"] == "req-3"


async def test_errors_are_grouped_by_reason_over_the_last_hour_and_day() -> None:
    history = history_of(
        journal_event("old", "users.create", "failed", status=503, minutes_ago=60 * 25),
        *(journal_event(f"r{n}", "users.create", "refused", status=409, minutes_ago=n * 20)
          for n in range(1, 6)),
        journal_event("f1", "users.patch", "failed", status=503, reason="modyo_timeout"),
        journal_event("ok", "users.create", "applied"),
    )  # fmt: skip
    app = console_app(console_settings(), history)
    async with app_client(app, None, "http://internal") as client:
        await signed_in(client)
        page = (await client.get("/console/errors")).text
    rows = page.split('<tr class="group ')[1:]
    assert len(rows) == 2
    assert "userName is already taken" in rows[0]
    assert '<td class="hour">2</td><td class="day">5</td>' in rows[0]  # 20 and 40 minutes ago
    assert "modyo_timeout" in rows[1] and '<td class="day">1</td>' in rows[1]


async def test_charts_count_requests_failures_and_retries_per_minute(
    client: httpx.AsyncClient,
) -> None:
    await signed_in(client)
    page = (await client.get("/console/charts")).text
    assert page.count("<svg") == 3
    assert "Journaled requests: 4 in all" in page
    assert "Failed or refused: 3 in all" in page
    assert "Modyo retries: 2 in all" in page


async def test_the_overview_shows_readiness_and_token_names_never_values() -> None:
    readiness = Readiness(5, 15)

    async def modyo() -> str | None:
        return "modyo_token_rejected"

    readiness.add("modyo", modyo)
    await readiness.refresh()
    settings = console_settings(server={"public_url": "https://scim.bank.example"})
    app = console_app(settings, history_of(journal_event("a", replica="pod-b")), readiness)
    async with app_client(app, None, "http://internal") as client:
        await signed_in(client)
        page = (await client.get("/console/")).text
    # a rejected Modyo token is reported, not gated: readiness is this process's alone
    assert "Not ready: <code>starting</code>" in page  # the app's lifespan never ran here
    assert '<tr><td>modyo</td><td class="bad">token_rejected</td></tr>' in page
    assert '<dd class="bad">rejected</dd>' in page
    assert "https://scim.bank.example/scim" in page
    assert "<code>entra</code>, <code>rotated</code>" in page and TOKEN not in page
    assert "pod-b" in page and "0.1.0" in page


async def test_configuration_masks_secrets_and_names_each_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[scim]\ntokens = {{ entra = "{TOKEN}" }}\nmax_page_size = 50\n'
        f'[modyo]\nbase_url = "http://localhost:9"\ntoken = "{MODYO_TOKEN}"\n'
    )
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    monkeypatch.setenv("BRIDGE_ADMIN__TOKENS_FILE", json.dumps({"ops": str(token_file)}))
    monkeypatch.setenv("BRIDGE_RETRY__MAX_ATTEMPTS", "3")
    settings = load_settings(config)
    app = console_app(settings, MemoryHistory(10))
    async with app_client(app, None, "http://internal") as client:
        await signed_in(client)
        page = (await client.get("/console/configuration")).text
    for secret in (TOKEN, MODYO_TOKEN, ADMIN_TOKEN):
        assert secret not in page

    def row(key: str) -> str:
        return page.split(f"<code>{key}</code>")[1].split("</tr>")[0]

    assert "entra (values masked)" in row("scim.tokens") and ">file<" in row("scim.tokens")
    assert ">50<" in row("scim.max_page_size") and ">file<" in row("scim.max_page_size")
    assert "masked" in row("modyo.token")
    assert "ops (values masked)" in row("admin.tokens")
    assert ">environment<" in row("admin.tokens")
    assert ">3<" in row("retry.max_attempts") and ">environment<" in row("retry.max_attempts")
    assert ">default<" in row("server.port")


async def test_the_safety_slot_without_and_with_a_panel(history: MemoryHistory) -> None:
    released: list[str] = []

    class Panel:
        async def summary(self) -> list[tuple[str, str]]:
            return [("Brake", "released" if released else "engaged")]

        async def release(self, admin: str) -> str:
            released.append(admin)
            return f"released by {admin}"

    for panel, expected in ((None, "not part of this bridge"), (Panel(), "engaged")):
        settings = console_settings()
        app = console_app(settings, history)
        if panel is not None:
            from bridge.edge.app import internal_app

            app = internal_app(settings, console_routes(settings, history, None, panel))
        async with app_client(app, None, "http://internal") as client:
            await signed_in(client)
            page = (await client.get("/console/safety")).text
            assert expected in page
            if panel is not None:
                refused = await client.post("/console/safety/release", data={"csrf": "x"})
                assert refused.status_code == 403 and not released
                done = await client.post("/console/safety/release", data={"csrf": csrf_of(page)})
                assert "released by ops-alice" in done.text and released == [ADMIN_NAME]


async def test_no_console_path_answers_on_the_scim_listener(modyo: Any) -> None:
    from bridge.modyo.fake import mock_transport
    from tests.harness import MODYO_URL

    settings = console_settings()
    app = create_app(settings, modyo_transport=mock_transport(modyo, MODYO_URL))
    async with app_client(app, None, "http://bridge.test") as client:
        for path in ["/", "/console", "/console/", "/console/sign-in", "/console/console.css"]:
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/scim+json"
        signed = await client.post("/console/sign-in", data={"token": ADMIN_TOKEN})
        assert signed.status_code in (404, 405) and "set-cookie" not in signed.headers


@pytest.mark.parametrize(
    ("tokens", "problem"),
    [
        ({"ops": "short"}, "admin.tokens: Value error, token 'ops' is shorter than 32"),
        ({"ops": TOKEN}, "'ops' is also a SCIM token"),
        ({"bad name": ADMIN_TOKEN}, "a token's name must be"),
        ("just-a-string", "must be a table of named tokens"),
    ],
)
def test_admin_tokens_follow_the_scim_token_rules(tokens: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, **_sections(admin={"tokens": tokens}))
    text = str(raised.value)
    assert problem.split(": Value error, ")[-1] in text
    assert "short" not in text.replace("shorter", "")  # the value is never echoed


def _sections(**extra: Any) -> dict[str, Any]:
    return {
        "scim": {"tokens": {"entra": TOKEN}},
        "modyo": {"base_url": "http://localhost:9", "token": MODYO_TOKEN},
        **extra,
    }


def test_the_overview_reads_a_status_report_when_the_readiness_has_one() -> None:
    """A readiness serving ``/status`` reports each check's state and last probe: the
    Overview shows those (the console's seam to it)."""
    probed = datetime.now(UTC) - timedelta(seconds=30)

    class Reporting:
        def status_report(self) -> dict[str, Any]:
            return {
                "readiness": {"status": "ready"},
                "checks": {
                    "modyo": {"state": "token_rejected", "last_probe": {"at": probed.isoformat()}},
                    "shared_store": {"state": "ok", "last_probe": {"at": "not a time"}},
                },
            }

    found, age = checks(Reporting(), wall=lambda: datetime.now(UTC).timestamp())  # type: ignore[arg-type]
    assert [(check.name, check.result, check.ok) for check in found] == [
        ("modyo", "token_rejected", False),
        ("shared_store", "ok", True),
    ]
    assert age is not None and 29 <= age <= 3600


async def test_the_safety_page_shows_the_real_brake_and_releases_it(modyo: Any) -> None:
    """The console over the app's own rails: a disable held at a threshold of 1 shows as
    engaged; the release form (CSRF-checked) opens it, and Entra's retry then applies."""
    from bridge.console.safety import RailsPanel
    from bridge.edge.app import internal_app
    from bridge.modyo.fake import mock_transport
    from tests import entra
    from tests.harness import MODYO_URL, app_client, create_user

    settings = console_settings(safety={"enabled": True, "max_disables": 1})
    app = create_app(settings, modyo_transport=mock_transport(modyo, MODYO_URL))
    console = internal_app(
        settings, console_routes(settings, MemoryHistory(10), None, RailsPanel(app.rails))
    )
    disable = entra.patch(entra.op("Replace", "active", False))
    async with (
        app_client(app) as scim,
        app_client(console, None, "http://internal") as client,
    ):
        ids = [(await create_user(scim, f"held{n}@contoso.com"))["id"] for n in (1, 2)]
        assert (await scim.patch(f"/Users/{ids[0]}", json=disable)).status_code == 200
        held = await scim.patch(f"/Users/{ids[1]}", json=disable)
        assert held.status_code == 503 and "Retry-After" in held.headers
        await signed_in(client)
        page = (await client.get("/console/safety")).text
        assert "Dry run</dt><dd>off" in page and "engaged since" in page
        done = await client.post("/console/safety/release", data={"csrf": csrf_of(page)})
        assert "Released:" in done.text, done.text
        assert (await scim.patch(f"/Users/{ids[1]}", json=disable)).status_code == 200
