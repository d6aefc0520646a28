"""The admin console in a real browser: headless Chromium driven by Selenium, JavaScript
turned off (the console must work without it), against the internal listener served over
real HTTP on 127.0.0.1, beside a SCIM listener (docs/operator/console.md).

Needs ``chromium`` and ``chromedriver`` (Debian: ``apt-get install chromium
chromium-driver``; ``.ci/run`` installs them when missing). Without them these tests FAIL,
saying so: they never skip, so CI cannot pass without the browser.

Screenshots of each page go to ``$CONSOLE_SCREENSHOTS`` (a temporary directory unless set);
docs/operator/console.md shows the copies in docs/operator/images/, refreshed with
``CONSOLE_SCREENSHOTS=docs/operator/images .venv/bin/pytest -n 0 --no-cov
tests/test_console_browser.py``.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from bridge.console.headers import CSP
from bridge.console.session import COOKIE
from bridge.edge.app import create_app
from bridge.edge.readiness import Readiness
from bridge.journal.history import MemoryHistory
from bridge.modyo.fake import FakeModyo, FaultyModyo, mock_transport
from tests import entra
from tests.console import (
    ADMIN_NAME,
    ADMIN_TOKEN,
    console_app,
    console_settings,
    journal_event,
    served,
)
from tests.harness import MODYO_TOKEN, MODYO_URL, TOKEN

WAIT_SECONDS = 30.0
"""The hang guard of every wait for the browser (a download, a page)."""
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser() -> WebDriver:
    binary = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail(
            "the console's browser tests need Chromium and its driver on PATH (Debian: "
            "apt-get install chromium chromium-driver; .ci/run installs them): "
            f"chromium {'found' if binary else 'MISSING'}, chromedriver "
            f"{'found' if driver else 'MISSING'}"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        "--window-size=1280,900", "--no-first-run", "--no-default-browser-check",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--force-device-scale-factor=1",
    ):  # fmt: skip
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {
            "profile.managed_default_content_settings.javascript": 2,  # no JavaScript
            "download.prompt_for_download": False,
        },
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    driver = _browser()
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("CONSOLE_SCREENSHOTS")
    directory = Path(given) if given else tmp_path_factory.mktemp("console-screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


async def _attacker(request: Request) -> HTMLResponse:
    """Another origin of the same site (127.0.0.1, another port: the session cookie goes
    along) posting to the console's sign-out with a wrong CSRF token, and with none."""
    target = request.query_params["target"]
    return HTMLResponse(
        f'<form method="post" action="{target}"><input type="hidden" name="csrf" '
        'value="0000"><button id="wrong">go</button></form>'
        f'<form method="post" action="{target}"><input type="hidden" name="other" '
        'value="1"><button id="none">go</button></form>'
    )


def _wait(browser: WebDriver, condition: Callable[[WebDriver], object]) -> None:
    WebDriverWait(browser, WAIT_SECONDS).until(condition)


def _click(browser: WebDriver, by: str, value: str) -> None:
    """Click what navigates, and wait until the next page replaced this one."""
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(by, value).click()
    _wait(browser, expected_conditions.staleness_of(page))


def _open(browser: WebDriver, url: str) -> None:
    browser.get(url)


def _text(browser: WebDriver, css: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def _rows(browser: WebDriver) -> list[str]:
    return [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#events tr.event")]


def test_the_console_in_a_real_browser(
    browser: WebDriver, screenshots: Path, tmp_path: Path
) -> None:
    settings = console_settings(server={"public_url": "https://scim.bank.example"})
    history = MemoryHistory(1000)
    for event in (
        journal_event("a1b2c3d4e5f60718", "groups.patch", "applied", name="Finance", status=204,
                      minutes_ago=50, retries=1),
        journal_event("b2c3d4e5f6071829", "users.patch", "refused", name="bob@contoso.com",
                      status=400, detail="'emails' is not a valid value", minutes_ago=40),
        journal_event("c3d4e5f607182930", "users.create", "failed", name="carol@contoso.com",
                      status=503, reason="modyo_unreachable", minutes_ago=20, retries=2),
        journal_event("d4e5f60718293041", "users.create", "refused", name="=cmd|' /C calc'!A0",
                      status=409, minutes_ago=10),
    ):  # fmt: skip
        history.add(event)
    fake = FakeModyo(token=MODYO_TOKEN)
    readiness = Readiness(5, 15)  # the SCIM app's, which its lifespan runs; the Overview reads it
    transport = mock_transport(FaultyModyo(fake), MODYO_URL)
    scim = create_app(settings, modyo_transport=transport, readiness=readiness)
    attacker = Starlette(routes=[Route("/", _attacker)])
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )
    internal_app = console_app(settings, history, readiness)
    with served(internal_app, scim, attacker) as (internal, scim_port, evil):
        console = f"http://127.0.0.1:{internal}/console"

        # A user created through SCIM; its event as the journal records it
        created = httpx.post(
            f"http://127.0.0.1:{scim_port}/scim/Users",
            json=entra.user("alice@contoso.com"),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=WAIT_SECONDS,
        )
        assert created.status_code == 201
        history.add(
            journal_event(created.headers["x-request-id"], "users.create", "applied",
                          name=created.json()["userName"], minutes_ago=0)
        )  # fmt: skip

        _wait(browser, lambda _: readiness.reason() is None)  # the first round of checks

        # Without the cookie, every page sends the browser to sign-in
        _open(browser, f"{console}/activity")
        assert browser.current_url == f"{console}/sign-in"
        browser.save_screenshot(str(screenshots / "console-sign-in.png"))
        browser.find_element(By.ID, "token").send_keys("not-an-admin-token-0123456789-abcdef")
        _click(browser, By.ID, "sign-in")
        assert "not an admin token" in _text(browser, "#problem")
        browser.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
        _click(browser, By.ID, "sign-in")
        assert browser.current_url == f"{console}/"
        assert _text(browser, "#admin") == ADMIN_NAME
        assert _text(browser, "#verdict") == "Ready: SCIM requests can be served."
        assert _text(browser, "#tenant-url") == "https://scim.bank.example/scim"
        assert _text(browser, "#scim-token-names") == "entra, rotated"
        assert ADMIN_TOKEN not in browser.page_source and TOKEN not in browser.page_source
        cookie = browser.get_cookie(COOKIE)
        assert cookie is not None
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert cookie["secure"] is False and cookie["path"] == "/console"  # plain HTTP here
        assert "expiry" in cookie
        # the stylesheet loaded under the CSP: the header is drawn dark
        header = browser.find_element(By.TAG_NAME, "header")
        assert header.value_of_css_property("background-color") == "rgba(29, 35, 43, 1)"
        browser.save_screenshot(str(screenshots / "console-overview.png"))

        # The event of the user just created, newest first
        _click(browser, By.LINK_TEXT, "Activity")
        rows = _rows(browser)
        assert len(rows) == 5
        assert "alice@contoso.com" in rows[0] and "applied" in rows[0]
        browser.save_screenshot(str(screenshots / "console-activity.png"))

        # Filtered to errors
        browser.find_element(By.ID, "outcome-failed").click()
        browser.find_element(By.ID, "outcome-refused").click()
        _click(browser, By.ID, "apply")
        rows = _rows(browser)
        assert len(rows) == 3
        assert all(("failed" in row) or ("refused" in row) for row in rows)
        assert "carol@contoso.com" in rows[1] and "alice" not in " ".join(rows)
        browser.save_screenshot(str(screenshots / "console-activity-errors.png"))

        # The filtered events as CSV, downloaded by the browser
        browser.find_element(By.ID, "export-csv").click()
        _wait(browser, lambda _: [path for path in tmp_path.glob("*.csv")])
        exported = next(tmp_path.glob("*.csv"))
        table = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8"))))
        assert [row["outcome"] for row in table] == ["refused", "failed", "refused"]
        assert table[0]["resource_name"] == "'=cmd|' /C calc'!A0"  # defused formula
        assert table[1]["detail"] == "modyo_unreachable"
        assert table[1]["modyo_calls"].count("POST /api/admin/users") == 3

        # An event's own page, with its Modyo calls
        _click(browser, By.PARTIAL_LINK_TEXT, "T")  # the first row's time
        assert browser.current_url == f"{console}/events/d4e5f60718293041"
        _open(browser, f"{console}/events/c3d4e5f607182930")
        assert _text(browser, "#outcome") == "failed"
        assert _text(browser, "#reason") == "modyo_unreachable"
        calls = browser.find_elements(By.CSS_SELECTOR, "#modyo-calls tr.call")
        assert [call.text.split()[-2] for call in calls] == ["1", "2", "3"]  # attempts
        browser.save_screenshot(str(screenshots / "console-event.png"))

        for page, check in (
            ("Errors", "#error-groups"),
            ("Charts", "figure"),
            ("Configuration", "#configuration"),
        ):
            _click(browser, By.LINK_TEXT, page)
            assert browser.find_element(By.CSS_SELECTOR, check).is_displayed()
            browser.save_screenshot(str(screenshots / f"console-{page.lower()}.png"))
        assert MODYO_TOKEN not in browser.page_source and ADMIN_TOKEN not in browser.page_source

        # A same-site page posting without, or with a wrong, CSRF token is refused
        for button in ("wrong", "none"):
            _open(browser, f"http://127.0.0.1:{evil}/?target={console}/sign-out")
            _click(browser, By.ID, button)
            assert "CSRF token" in _text(browser, "#problem")
        _open(browser, f"{console}/")
        assert browser.current_url == f"{console}/"  # still signed in

        # No console path on the SCIM listener
        _open(browser, f"http://127.0.0.1:{scim_port}/console/")
        assert "no SCIM endpoint at /console/" in browser.page_source

        # Sign out: the cookie is gone, and the console asks to sign in again
        _open(browser, f"{console}/")
        _click(browser, By.ID, "sign-out")
        assert browser.current_url == f"{console}/sign-in"
        assert browser.get_cookie(COOKIE) is None
        _open(browser, f"{console}/errors")
        assert browser.current_url == f"{console}/sign-in"

        # Nothing the pages did broke the CSP; and the header is the strict one
        violations = [
            entry["message"]
            for entry in browser.get_log("browser")  # type: ignore[attr-defined]
            if "Content Security Policy" in entry["message"]
        ]
        assert violations == []
        head = httpx.get(f"{console}/sign-in", timeout=WAIT_SECONDS)
        assert head.headers["content-security-policy"] == CSP
