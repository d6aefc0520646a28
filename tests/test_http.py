"""Authentication, protocol errors and upstream failures, all as SCIM error JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from bridge.config import Settings
from bridge.edge.app import create_app, internal_app
from bridge.modyo.fake import FakeModyo, Faults, FaultyModyo, mock_transport
from bridge.modyo.http import ModyoHttp
from bridge.modyo.rest import RestUpstream
from bridge.modyo.retry import RetryPolicy
from bridge.upstream import UserRecord
from tests import entra
from tests.harness import (
    BASE,
    MODYO_TOKEN,
    MODYO_URL,
    SECOND_TOKEN,
    LogOutput,
    app_client,
    asgi_client,
    assert_scim_error,
    bridge_client,
    create_user,
    make_settings,
    quiet_readiness,
)
from tests.servers import uvicorn_serving


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
    ],
)
async def test_missing_or_wrong_token_is_401(
    scim: httpx.AsyncClient, headers: dict[str, Any]
) -> None:
    response = await scim.get("/Users", headers={"Authorization": ""} | headers)
    body = assert_scim_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "wrong-token" not in body["detail"]


@pytest.mark.parametrize("path", ["/Users/%0A", "/Users%0A/1", "/%0D%0A", "/Schemas/a%0Ab"])
async def test_a_line_break_in_the_path_is_still_401_without_the_token(
    scim: httpx.AsyncClient, path: str
) -> None:
    """Starlette's mount pattern (``.*``) does not match a newline: such a request was a 404
    before its token was checked. Every path under the base path needs the token."""
    response = await scim.get(path, headers={"Authorization": ""})
    assert_scim_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_scim_error(await scim.get(path), 404)  # with the token: no such resource


async def test_every_configured_token_is_accepted(modyo: FaultyModyo) -> None:
    """Token rotation without downtime: old and new tokens work at the same time."""
    async with bridge_client(modyo, make_settings(), token=SECOND_TOKEN) as client:
        assert (await client.get("/Users")).status_code == 200


async def test_discovery_also_requires_the_token(scim: httpx.AsyncClient) -> None:
    response = await scim.get("/Schemas", headers={"Authorization": ""})
    assert_scim_error(response, 401)


async def test_unsupported_method_is_405_with_allow(scim: httpx.AsyncClient) -> None:
    response = await scim.delete("/Users")
    assert_scim_error(response, 405)
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    response = await scim.post("/Users/12", json={})
    assert_scim_error(response, 405)
    assert {"GET", "PATCH", "PUT", "DELETE"} <= set(
        response.headers["allow"].replace(" ", "").split(",")
    )


async def test_unknown_endpoint_is_scim_404(scim: httpx.AsyncClient) -> None:
    assert_scim_error(await scim.get("/Nothing"), 404)


@pytest.mark.parametrize(
    ("method", "url"),
    [("GET", f"{BASE}/Users/"), ("POST", f"{BASE}/Users/"), ("GET", f"{BASE}/Schemas/?x=%"),
     ("GET", BASE), ("GET", "http://bridge.test/healthz/")],
)  # fmt: skip
async def test_a_trailing_slash_is_a_scim_404_not_a_redirect(
    scim: httpx.AsyncClient, fake: FakeModyo, method: str, url: str
) -> None:
    """Starlette redirected ``/Users/`` to ``/Users`` with a Location built from the Host
    header and the raw query (``?x=%`` came back verbatim, an invalid URL). RFC 7644 §3.2
    names the endpoints exactly; anything else is a SCIM 404."""
    response = await scim.request(method, url, json=entra.user("slash@contoso.com"))
    assert_scim_error(response, 404)
    assert "location" not in response.headers
    assert not fake.team_members


async def test_oversized_body_is_413_without_reading_it_all(modyo: FaultyModyo) -> None:
    settings = make_settings(server={"max_body_bytes": 2048})
    async with bridge_client(modyo, settings) as client:
        payload = entra.user("big@contoso.com")
        payload["name"]["givenName"] = "x" * 5000
        response = await client.post("/Users", json=payload)
        assert_scim_error(response, 413)

        async def chunks() -> AsyncIterator[
            bytes
        ]:  # no Content-Length: the limit applies while streaming
            for _ in range(10):
                yield b" " * 1024

        response = await client.post("/Users", content=chunks())
        assert_scim_error(response, 413)
    assert isinstance(modyo.fake, FakeModyo) and modyo.fake.team_members == {}


async def test_every_response_carries_the_scim_media_type(scim: httpx.AsyncClient) -> None:
    created = await create_user(scim, "media@contoso.com")
    responses = [
        await scim.get(f"/Users/{created['id']}"),
        await scim.get("/Users"),
        await scim.get("/Users/0"),
        await scim.patch(
            f"/Users/{created['id']}", json=entra.patch(entra.op("Replace", "active", False))
        ),
        await scim.get("/ServiceProviderConfig"),
        await scim.delete(f"/Users/{created['id']}"),
    ]
    for response in responses:
        expected = None if response.status_code == 204 else "application/scim+json"  # no content
        assert response.headers.get("content-type") == expected, response.request.url
        assert response.headers["x-request-id"]


async def test_a_rejected_modyo_token_is_503_with_retry_after_without_leaking_it(
    modyo: FaultyModyo,
) -> None:
    """Nothing Entra can change and no readiness to gate on: the bridge's own 503, which Entra
    retries later, naming the setting to fix (docs/operator/health.md)."""
    settings = make_settings(modyo={"token": "the-wrong-modyo-token"})
    async with bridge_client(modyo, settings) as client:
        response = await client.get("/Users")
    body = assert_scim_error(response, 503)
    assert response.headers["retry-after"] == "60"
    assert "401" in body["detail"] and "modyo.token" in body["detail"]
    assert "the-wrong-modyo-token" not in response.text and MODYO_TOKEN not in response.text


async def test_modyo_unavailable_is_503_with_retry_after(fake: FakeModyo) -> None:
    down = FaultyModyo(fake, Faults(error_rate=1.0, seed=3))
    async with bridge_client(down, make_settings(retry={"max_attempts": 3})) as client:
        response = await client.get("/Users/1")
    body = assert_scim_error(response, 503)
    assert int(response.headers["retry-after"]) >= 1
    assert "Modyo" in body["detail"]
    assert down.injected["error"] == 3  # every attempt was made, then it gave up


async def _internal_get(settings: Settings, path: str) -> httpx.Response:
    """``path`` from the internal listener's app (``[internal]``), without a token."""
    async with asgi_client(
        internal_app(settings), token=None, base_url="http://internal"
    ) as client:
        return await client.get(path)


async def test_health_needs_no_token_and_metrics_are_only_on_the_internal_listener(
    scim: httpx.AsyncClient, settings: Settings
) -> None:
    root = str(scim.base_url).removesuffix("/scim/")
    health = await scim.get(f"{root}/healthz", headers={"Authorization": ""})
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    await scim.get("/Users")
    assert (await scim.get(f"{root}/metrics")).status_code == 404  # never beside SCIM
    metrics = await _internal_get(settings, "/metrics")
    assert metrics.status_code == 200
    assert (
        'scim_bridge_requests_total{method="GET",operation="users.query",status="200"}'
        in metrics.text
    )
    assert "scim_bridge_modyo_calls_total" in metrics.text


async def test_metrics_can_be_turned_off() -> None:
    response = await _internal_get(make_settings(server={"metrics_enabled": False}), "/metrics")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/scim+json"


async def test_the_internal_listener_takes_more_apps() -> None:
    """An admin console (say) is a Mount of the internal app, beside /metrics."""

    async def console(request: Request) -> Response:
        return PlainTextResponse("console")

    app = internal_app(make_settings(), [Mount("/admin", routes=[Route("/", console)])])
    async with asgi_client(app, token=None, base_url="http://internal") as client:
        assert (await client.get("/admin/")).text == "console"
        assert (await client.get("/metrics")).status_code == 200


async def test_public_url_drives_location(modyo: FaultyModyo) -> None:
    settings = make_settings(server={"public_url": "https://scim.bank.example"})
    async with bridge_client(modyo, settings) as client:
        response = await client.post("/Users", json=entra.user("loc@contoso.com"))
    assert response.headers["location"].startswith("https://scim.bank.example/scim/Users/")
    assert response.json()["meta"]["location"] == response.headers["location"]


async def test_an_unexpected_error_is_logged_once_and_answered_with_its_request_id(
    fake: FakeModyo, log_output: LogOutput
) -> None:
    """One last-resort path (observe.py): one log line with the traceback, and a SCIM 500
    whose detail names the request id an admin can search the log for."""
    settings = make_settings()
    log_output.configure()

    class Broken(RestUpstream):
        async def get_user(self, user_id: str) -> UserRecord:
            raise RuntimeError("a bug")

    http = ModyoHttp(
        settings.modyo, RetryPolicy(settings.retry), mock_transport(FaultyModyo(fake), MODYO_URL)
    )
    app = create_app(settings, upstream=Broken(http), readiness=quiet_readiness(settings))
    async with app_client(app, headers={"X-Request-Id": "trace-me-42"}) as client:
        response = await client.get("/Users/12")
    body = assert_scim_error(response, 500)
    request_id = response.headers["x-request-id"]
    assert request_id in body["detail"] and "a bug" not in body["detail"]
    errors = [line for line in log_output.lines() if line["level"] == "error"]
    assert len(errors) == 1 and "RuntimeError: a bug" in errors[0]["exception"]
    assert errors[0]["request_id"] == request_id
    [access] = [line for line in log_output.lines() if line["message"] == "request"]
    assert access["client_request_id"] == "trace-me-42"  # beside the bridge's own


@pytest.mark.parametrize(
    ("path", "canonical"),
    [("/users", "/Users"), ("/USERS", "/Users"), ("/groups", "/Groups"), ("/schemas", "/Schemas"),
     ("/serviceproviderconfig", "/ServiceProviderConfig"), ("/resourcetypes", "/ResourceTypes")],
)  # fmt: skip
async def test_resource_endpoints_match_case_insensitively(
    scim: httpx.AsyncClient, path: str, canonical: str
) -> None:
    """As Microsoft's reference server: ``/scim/users`` is ``/scim/Users``."""
    response, expected = await scim.get(path), await scim.get(canonical)
    assert response.status_code == expected.status_code == 200
    assert response.json() == expected.json()


async def test_case_insensitive_paths_leave_ids_as_sent(
    scim: httpx.AsyncClient, fake: FakeModyo
) -> None:
    user = await create_user(scim, "case@contoso.com")
    assert (await scim.get(f"/users/{user['id']}")).json()["id"] == user["id"]
    fake.reset_calls()
    assert_scim_error(await scim.get("/Users/users"), 404)  # an id spelled like a resource
    assert fake.calls == {"GET /team_members/:id": 1}  # asked as "users", not "Users"
    searched = await scim.post("/USERS/.SEARCH", json={"filter": 'userName eq "case@contoso.com"'})
    assert searched.json()["totalResults"] == 1
    twin = await scim.post("/users", json=entra.user("case@contoso.com"))
    assert_scim_error(twin, 409, "uniqueness")  # the same resource, whatever the case


@pytest.mark.parametrize("declared", [b"\xb2", b"\xb9", b"1\xb2"])  # "²", "¹": isdigit(), not int()
async def test_a_content_length_of_other_digits_is_no_500(
    scim: httpx.AsyncClient, fake: FakeModyo, declared: bytes
) -> None:
    """Starlette reads headers as Latin-1, where "²" counts as a digit that ``int()`` refuses
    (it was a 500). Such a length is ignored: the size cap applies while streaming."""
    body, headers = entra.user("len@contoso.com"), [(b"content-length", declared)]
    request = scim.build_request("POST", "/Users", json=body, headers=headers)
    assert request.headers.get_list("content-length") == [declared.decode("latin-1")]
    response = await scim.send(request)
    assert response.status_code == 201, response.text
    assert len(fake.team_members) == 1


INVALID_HOSTS = [b"a b", b"evil.example/x?y#z", b"@evil.example", b"[::1", b"[::g]:80", b"",
                 b"bridge.test:99999", b"bridge.test:" + b"9" * 5000, b"x:port", b'"quoted"',
                 b"h\xc3\xa9.example", b"bridge.test, evil.example",
                 b"bridge.test\r\nX-Injected: 1"]  # fmt: skip


@pytest.mark.parametrize("host", INVALID_HOSTS)
async def test_an_invalid_host_is_400_before_anything_is_written(
    scim: httpx.AsyncClient, fake: FakeModyo, host: bytes
) -> None:
    """RFC 9112 §3.2: 400 for an invalid Host. The bridge builds Location and every
    meta.location from it; Starlette fell back to the listening address (``0.0.0.0:8000``
    in a container) and the user was created, answered with a URL no client could use."""
    response = await scim.post(
        "/Users", json=entra.user("h@contoso.com"), headers=[(b"host", host)]
    )
    body = assert_scim_error(response, 400)
    assert "Host header" in body["detail"] and "location" not in response.headers
    assert not fake.calls


async def test_a_missing_or_repeated_host_is_400(scim: httpx.AsyncClient, fake: FakeModyo) -> None:
    twice = scim.build_request("GET", "/Users", headers=[(b"host", b"a.example")])
    twice.headers = httpx.Headers([*twice.headers.raw, (b"host", b"b.example")])
    missing = scim.build_request("GET", "/Users")
    del missing.headers["host"]
    for request, detail in ((twice, "more than one Host"), (missing, "no Host")):
        assert detail in assert_scim_error(await scim.send(request), 400)["detail"]
    assert not fake.calls


@pytest.mark.parametrize(
    ("host", "base"),
    [(b"scim.bank.example", "http://scim.bank.example"), (b"[::1]:8443", "http://[::1]:8443"),
     (b"10.0.0.5:8000", "http://10.0.0.5:8000"), (b"xn--bcher-kva.example", "http://xn--bcher-kva.example")],
)  # fmt: skip
async def test_a_valid_host_names_the_location(
    scim: httpx.AsyncClient, host: bytes, base: str
) -> None:
    response = await scim.post(
        "/Users", json=entra.user("v@contoso.com"), headers=[(b"host", host)]
    )
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{base}/scim/Users/{response.json()['id']}"


async def test_http_1_0_without_host_is_served_and_1_1_without_host_is_not() -> None:
    """Over a real socket (uvicorn, httptools): HTTP/1.0 has no Host to require."""
    settings = make_settings()
    app = create_app(settings, modyo_transport=mock_transport(FaultyModyo(FakeModyo()), MODYO_URL))
    async with uvicorn_serving(app, http="httptools") as port:
        answers = []
        for version in (b"HTTP/1.0", b"HTTP/1.1"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz " + version + b"\r\nConnection: close\r\n\r\n")
            answers.append(await reader.read())
            writer.close()
            await writer.wait_closed()
    assert answers[0].startswith(b"HTTP/1.1 200 ")
    head, _, body = answers[1].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/scim+json" in head
    assert json.loads(body)["detail"] == "the request has no Host header"
