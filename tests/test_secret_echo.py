"""Modyo's words never carry a secret out: a Modyo (or a proxy) that quotes the request it got,
``Authorization`` header included, in its error text, its body or its headers, never gets the
bridge's token into a SCIM answer or a ``check`` line. Every such text passes the masking of
log lines (``bridge.logs.mask``), in both upstream modes and on every error path: refusals
(400, 409), failures mapped to 502 and 503, a refused connection, ``check``'s probes."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bridge.logs import MASK
from bridge.modyo.check import run_check
from bridge.modyo.fake import FakeModyo, FakeModyoScim, FaultyModyo, mock_transport
from bridge.modyo.scim import MEDIA_TYPE
from tests import entra
from tests.conftest import MODYO_TOKEN, MODYO_URL, LogOutput, bridge_client, make_settings

SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PROXY_USER, PROXY_PASSWORD = "egress-user", "proxy-password-0123"
BASIC = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()


class EchoingModyo(httpx.AsyncBaseTransport):
    """A Modyo that quotes the ``Authorization`` header it got: in an ``X-Echo`` header (and a
    ``Retry-After`` that is not one) of every answer, and in the error text of the failure it
    answers to the calls ``fail`` names (``"POST /team_members"``: method and path suffix;
    ``"*"``: every call but the token's probe, ``GET /profile``) in
    the envelope of its interface: REST's ``{"errors": [...]}`` or a SCIM Error (RFC 7644
    §3.12). ``status`` 0 stands for an egress proxy refusing the tunnel with a reason phrase
    that quotes the proxy credentials it got."""

    def __init__(self, inner: httpx.AsyncBaseTransport, fail: dict[str, int]) -> None:
        self.inner = inner
        self.fail = fail
        self.echoed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        credential = request.headers.get("authorization", "")
        status = next(
            (
                status
                for call, status in self.fail.items()
                if (call == "*" and not request.url.path.endswith("/profile"))
                or (
                    request.method == call.split(" ")[0]
                    and request.url.path.endswith(call.split(" ")[1])
                )
            ),
            None,
        )
        if status is None:
            response = await self.inner.handle_async_request(request)
            response.headers["X-Echo"] = credential
            return response
        self.echoed += 1
        if status == 0:
            raise httpx.ProxyError(f"407 Proxy Authentication Required (got Basic {BASIC})")
        headers = {"X-Echo": credential, "Retry-After": credential}
        if "/scim/" in request.url.path:
            error: dict[str, Any] = {
                "schemas": [SCIM_ERROR],
                "status": str(status),
                "detail": f"the request had {credential}",
            }
            if status == 409:
                error["scimType"] = "uniqueness"
                error["detail"] = f"userName is already taken, said {credential}"
            return httpx.Response(
                status, json=error, headers=headers | {"Content-Type": MEDIA_TYPE}
            )
        if status == 409:
            errors: list[Any] = [f"Username has already been taken by {credential}"]
        else:
            errors = [{"field": "username", "messages": [f"is invalid for {credential}"]}]
        return httpx.Response(status, json={"errors": errors}, headers=headers)


@dataclass(frozen=True)
class Case:
    api: str
    method: str
    path: str
    fail: str  # the Modyo call that fails (EchoingModyo.fail)
    status: int  # what Modyo answers it (0: the proxy refuses)
    expected: int  # the SCIM answer
    quoted: bool  # whether the SCIM detail quotes Modyo's text (so the mask shows)

    @property
    def id(self) -> str:
        return f"{self.api}-{self.method}-{self.status}"


CREATE = ("POST", "/Users")
CASES = [
    Case("rest", *CREATE, "POST /team_members", 422, 400, quoted=True),
    Case("rest", *CREATE, "POST /team_members", 409, 409, quoted=True),
    Case("rest", "GET", "/Users/1", "GET /team_members/1", 500, 502, quoted=False),
    Case("rest", "GET", "/Users/1", "GET /team_members/1", 503, 503, quoted=False),
    Case("rest", "GET", "/Users/1", "GET /team_members/1", 0, 502, quoted=True),
    Case("scim", *CREATE, "POST /Users", 400, 400, quoted=True),
    Case("scim", *CREATE, "POST /Users", 409, 409, quoted=True),
    Case("scim", "GET", "/Users/u-1", "GET /Users/u-1", 500, 502, quoted=True),
    Case("scim", "GET", "/Users/u-1", "GET /Users/u-1", 418, 502, quoted=True),
    Case("scim", "GET", "/Users/u-1", "GET /Users/u-1", 503, 503, quoted=False),
]


def _settings(api: str) -> Any:
    proxy = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:3128"
    return make_settings(modyo={"api": api, "proxy_url": proxy}, retry={"max_attempts": 2})


def _fake(api: str) -> FaultyModyo:
    fake = FakeModyoScim(token=MODYO_TOKEN) if api == "scim" else FakeModyo(token=MODYO_TOKEN)
    return FaultyModyo(fake)


def _leaks(text: str) -> list[str]:
    """The secrets of this module's settings found in ``text``, in any form."""
    forms = [MODYO_TOKEN, PROXY_PASSWORD, BASIC, json.dumps(MODYO_TOKEN)[1:-1]]
    return [form for form in forms if form in text]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_no_scim_answer_carries_what_modyo_echoes(case: Case, log_output: LogOutput) -> None:
    log_output.configure()
    modyo = _fake(case.api)
    echoing = EchoingModyo(mock_transport(modyo, MODYO_URL), {case.fail: case.status})
    async with bridge_client(modyo, _settings(case.api), transport=echoing) as scim:
        body = entra.user("echo@contoso.com") if case.method == "POST" else None
        response = await scim.request(case.method, case.path, json=body)
    assert echoing.echoed >= 1, "the failure was never asked for"
    assert response.status_code == case.expected, response.text
    answer = response.text + "".join(f"{k}: {v}" for k, v in response.headers.items())
    assert _leaks(answer) == [], answer
    assert (MASK in response.json()["detail"]) is case.quoted, response.text
    assert _leaks(log_output.text) == []


@pytest.mark.parametrize("api", ["rest", "scim"])
async def test_no_check_line_carries_what_modyo_echoes(
    api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every call refused with the token quoted: each interface's table fails, masked."""
    settings = _settings(api)
    failures = {"*": 422 if api == "rest" else 400}
    echoing = EchoingModyo(mock_transport(_fake(api), MODYO_URL), failures)
    assert await run_check(settings.modyo, settings.retry, transport=echoing) == 1
    printed = capsys.readouterr().out
    assert "FAIL" in printed and MASK in printed
    assert _leaks(printed) == [], printed


async def test_a_proxy_quoting_its_credentials_never_reaches_check_s_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _settings("rest")
    echoing = EchoingModyo(mock_transport(_fake("rest"), MODYO_URL), {"*": 0})
    assert await run_check(settings.modyo, settings.retry, transport=echoing) == 1
    printed = capsys.readouterr().out
    assert "407" in printed and MASK in printed
    assert _leaks(printed) == [], printed
