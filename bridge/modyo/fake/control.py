"""The fake Modyo's control plane, under ``/__fake__/`` (never part of Modyo's API): read and
reset call counters, change faults at run time, hold calls to a route until released, seed
data in bulk. For benchmarks, cross-process tests and manual fault tests against
``scim-bridge fake-modyo``, which listens on 127.0.0.1 unless told otherwise
(``--allow-remote``). Every control request needs the fake's API token
(``Authorization: Bearer <token>``), as its Modyo API does: whoever reaches the port without
it can neither read nor change anything."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from bridge.modyo.fake.faults import FaultyModyo
from bridge.modyo.fake.state import FakeResponse

PREFIX = "/__fake__/"


def authorised(headers: Mapping[str, str], token: str) -> bool:
    """Whether a control request carries ``Bearer <token>`` (compared in constant time)."""
    scheme, _, credential = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credential.encode(), token.encode())


def control(service: FaultyModyo, method: str, path: str, body: bytes) -> FakeResponse:
    """Answer a control request (``path`` starts with :data:`PREFIX`), once authorised."""
    action = (method, path[len(PREFIX) :].rstrip("/"))
    try:
        payload: Any = json.loads(body) if body.strip() else {}
    except ValueError:
        return FakeResponse(400, {"errors": ["body is not JSON"]})
    fake = service.fake
    if action == ("GET", "calls"):
        return FakeResponse(
            200,
            {
                "calls": dict(fake.calls),
                "total": sum(fake.calls.values()),
                "injected": dict(service.injected),
                "peak_in_flight": service.peak_in_flight,
                "held": dict(service.held),
            },
        )
    if action == ("POST", "hold"):
        route = payload.get("route") if isinstance(payload, dict) else None
        if not isinstance(route, str) or not route:
            return FakeResponse(422, {"errors": ['body must be {"route": "POST /team_members"}']})
        service.hold_next(route)
        return FakeResponse(204)
    if action == ("POST", "release"):
        service.release_all()
        return FakeResponse(204)
    if action == ("POST", "reset-calls"):
        fake.reset_calls()
        service.injected.clear()
        service.peak_in_flight = 0
        return FakeResponse(204)
    if action == ("GET", "faults"):
        return FakeResponse(200, asdict(service.faults))
    if action == ("PUT", "faults"):
        if not isinstance(payload, dict):
            return FakeResponse(422, {"errors": ["body must be a JSON object of fault fields"]})
        try:
            service.update(payload)
        except (TypeError, ValueError) as exc:
            return FakeResponse(422, {"errors": [str(exc)]})
        return FakeResponse(200, asdict(service.faults))
    if action == ("POST", "seed"):
        return _seed(service, payload)
    return FakeResponse(404, {"errors": [f"no control endpoint {method} {path}"]})


def _seed(service: FaultyModyo, payload: dict[str, Any]) -> FakeResponse:
    """``{"users": n, "prefix": "p", "groups": [{"name": "G", "members": k}]}``: groups get
    the first k seeded users."""
    fake = service.fake
    users = fake.seed_members(int(payload.get("users", 0)), str(payload.get("prefix", "seed")))
    groups = []
    for group in payload.get("groups", []):
        members = users[: int(group.get("members", 0))]
        group_id = fake.seed_group(str(group["name"]), members)
        groups.append({"id": fake.client_id("group", group_id), "name": group["name"]})
    listed = [
        {"id": fake.client_id("user", user_id), "username": fake.user_name(user_id)}
        for user_id in users
    ]
    return FakeResponse(201, {"users": listed, "groups": groups})
