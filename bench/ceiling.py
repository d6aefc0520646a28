"""The ceiling: a minimal passthrough proxy making the Modyo calls each benchmarked operation
minimally needs under docs/design/modyo-contract.md, and no SCIM work (no validation, mapping,
filter parsing or error handling). ``--api scim`` makes the calls of Modyo's SCIM server (§9)
instead of the REST API's.

It builds its own HTTP client, as a minimal proxy would (httpx over the httpx-aiohttp
transport, the bridge's default stack, every option set here), and imports nothing from
``bridge``: a cost added to the bridge's shared plumbing cannot also slow the ceiling down
and hide in bridge ÷ ceiling.

    python -m bench.ceiling --port 8002 --modyo-url http://127.0.0.1:8001 --token T [--api scim]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import uvicorn
from httpx_aiohttp import AiohttpTransport
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

API = "/api/admin"
SCIM = "/api/admin/scim"
ORDER = {"per_page": "100", "sort_by": "id", "order": "asc"}
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CONNECTIONS = 64  # as many as the bridge's default pool (modyo.max_connections)


@dataclass(frozen=True)
class Upstream:
    """Where the ceiling sends its calls, and how."""

    base_url: str
    token: str
    transport: str = "aiohttp"  # or "httpx": httpx's own connection pool


def ceiling_client(upstream: Upstream, media_type: str = "application/json") -> httpx.AsyncClient:
    """The ceiling's client: keep-alive connections to Modyo, its bearer token, no retries, no
    proxy, no environment read (``trust_env`` off on both layers: a proxy in front of Modyo
    would be configured explicitly, once)."""
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    transport: httpx.AsyncBaseTransport
    if upstream.transport == "aiohttp":
        transport = AiohttpTransport(
            limits=limits,
            client=lambda: aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CONNECTIONS), trust_env=False
            ),
        )
    else:
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(
        base_url=upstream.base_url,
        transport=transport,
        headers={"Authorization": f"Bearer {upstream.token}", "Accept": media_type},
        timeout=httpx.Timeout(30.0),
        trust_env=False,
    )


def create_ceiling(upstream: Upstream) -> Starlette:
    http: httpx.AsyncClient

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal http
        async with ceiling_client(upstream) as client:
            http = client
            yield

    def passthrough(upstream: httpx.Response, status: int | None = None) -> Response:
        return Response(
            upstream.content,
            status_code=status or upstream.status_code,
            media_type="application/scim+json",
        )

    async def users(request: Request) -> Response:
        if request.method == "POST":  # create: 1 call
            body = json.loads(await request.body())
            payload = {"username": body["userName"], "email": body["userName"]}
            return passthrough(await http.post(f"{API}/team_members", json=payload), 201)
        user_name = request.query_params["filter"].split('"')[1]  # filter: 1 call
        return passthrough(
            await http.get(f"{API}/team_members", params={"username": user_name, **ORDER})
        )

    async def user(request: Request) -> Response:
        user_id = request.path_params["user_id"]
        if request.method == "GET":  # read: 1 call
            return passthrough(await http.get(f"{API}/team_members/{user_id}"))
        operation = json.loads(await request.body())["Operations"][0]  # patch: 1 call
        payload = {"first_name": operation["value"]}
        return passthrough(await http.put(f"{API}/team_members/{user_id}", json=payload))

    async def scan(request: Request) -> Response:
        """Every team member, read as the bridge reads a listing for a filter Modyo cannot
        search (page 1, then the other pages 8 at a time), decoded, counted: no SCIM work."""
        params = {**ORDER, "page": "1"}
        first = (await http.get(f"{API}/team_members", params=params)).json()
        gate = asyncio.Semaphore(8)

        async def page(number: int) -> list[object]:
            async with gate:
                params = {**ORDER, "page": str(number)}
                rows: list[object] = (await http.get(f"{API}/team_members", params=params)).json()[
                    "team_members"
                ]
                return rows

        pages = range(2, first["meta"]["total_pages"] + 1)
        rest = await asyncio.gather(*(page(number) for number in pages))
        total = len(first["team_members"]) + sum(len(rows) for rows in rest)
        return Response(json.dumps({"totalResults": total}), media_type="application/scim+json")

    async def groups(request: Request) -> Response:
        name = request.query_params["filter"].split('"')[1]  # filter: 1 call
        return passthrough(await http.get(f"{API}/groups", params={"name": name, **ORDER}))

    async def group(request: Request) -> Response:
        """Add members: the membership lookup and the add (2 calls: the contract has no way
        to know "already a member, write nothing" without the lookup)."""
        group_id = request.path_params["group_id"]
        values = json.loads(await request.body())["Operations"][0]["value"]
        ids = [member["value"] for member in values]
        params = [("only[]", "id"), ("only[]", "group_ids"), *(("ids[]", i) for i in ids)]
        await http.get(f"{API}/team_members", params=params)
        await http.post(f"{API}/groups/{group_id}/team_members", json={"team_member_ids": ids})
        return Response(status_code=204)

    return _app(users, user, groups, group, lifespan, scan)


def create_scim_ceiling(upstream: Upstream) -> Starlette:
    """The same four routes over Modyo's SCIM server, with the calls §9 needs at least."""
    http: httpx.AsyncClient

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal http
        async with ceiling_client(upstream, "application/scim+json") as client:
            http = client
            yield

    def passthrough(upstream: httpx.Response, status: int | None = None) -> Response:
        return Response(
            upstream.content,
            status_code=status or upstream.status_code,
            media_type="application/scim+json",
        )

    async def users(request: Request) -> Response:
        if request.method == "POST":  # create: 1 call
            body = json.loads(await request.body())
            payload = {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": body["userName"],
                "emails": [{"value": body["userName"], "type": "work"}],
            }
            return passthrough(await http.post(f"{SCIM}/Users", json=payload), 201)
        user_name = request.query_params["filter"].split('"')[1]  # filter: 1 call
        return passthrough(
            await http.get(f"{SCIM}/Users", params={"filter": f'userName eq "{user_name}"'})
        )

    async def user(request: Request) -> Response:
        path = f"{SCIM}/Users/{request.path_params['user_id']}"
        if request.method == "GET":  # read: 1 call
            return passthrough(await http.get(path))
        operation = json.loads(await request.body())["Operations"][0]  # patch: read + patch
        await http.get(path)
        body = {
            "schemas": [PATCH_URN],
            "Operations": [
                {"op": "replace", "path": "name.givenName", "value": operation["value"]}
            ],
        }
        return passthrough(await http.patch(path, json=body))

    async def groups(request: Request) -> Response:
        """Filter: the whole listing (one page per 100 groups), matched here."""
        name = request.query_params["filter"].split('"')[1]
        params = {"excludedAttributes": "members", "startIndex": "1", "count": "100"}
        first = (await http.get(f"{SCIM}/Groups", params=params)).json()
        found = [g for g in first["Resources"] if g["displayName"].lower() == name.lower()]
        for start in range(101, first["totalResults"] + 1, 100):
            page = await http.get(f"{SCIM}/Groups", params=params | {"startIndex": str(start)})
            found += [
                g for g in page.json()["Resources"] if g["displayName"].lower() == name.lower()
            ]
        return Response(
            json.dumps({"totalResults": len(found), "Resources": found}),
            media_type="application/scim+json",
        )

    async def group(request: Request) -> Response:
        """Add members: each user read (its groups) and one PATCH of the group."""
        values = json.loads(await request.body())["Operations"][0]["value"]
        ids = [member["value"] for member in values]
        for user_id in ids:
            await http.get(f"{SCIM}/Users/{user_id}")
        body = {
            "schemas": [PATCH_URN],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": i} for i in ids]}],
        }
        await http.patch(f"{SCIM}/Groups/{request.path_params['group_id']}", json=body)
        return Response(status_code=204)

    async def scan(request: Request) -> Response:
        """Every user, read as the bridge reads Modyo's SCIM listing for a filter it cannot
        search (100 from startIndex 1, then the other pages 8 at a time), decoded, counted."""
        first = await http.get(f"{SCIM}/Users", params={"startIndex": "1", "count": "100"})
        body = first.json()
        step, gate = len(body["Resources"]) or 1, asyncio.Semaphore(8)

        async def page(start: int) -> int:
            async with gate:
                params = {"startIndex": str(start), "count": str(step)}
                return len((await http.get(f"{SCIM}/Users", params=params)).json()["Resources"])

        starts = range(1 + step, body["totalResults"] + 1, step)
        rest = await asyncio.gather(*(page(start) for start in starts))
        total = len(body["Resources"]) + sum(rest)
        return Response(json.dumps({"totalResults": total}), media_type="application/scim+json")

    return _app(users, user, groups, group, lifespan, scan)


def _app(users: Any, user: Any, groups: Any, group: Any, lifespan: Any, scan: Any) -> Starlette:
    routes = [
        Route("/scim/Users", users, methods=["GET", "POST"]),
        Route("/scim/Users/{user_id}", user, methods=["GET", "PATCH"]),
        Route("/scim/Groups", groups, methods=["GET"]),
        Route("/scim/Groups/{group_id}", group, methods=["PATCH"]),
    ]
    if scan is not None:  # the bench's scan section
        routes.append(Route("/scim/scan/Users", scan, methods=["GET"]))
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--modyo-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--transport", default="aiohttp", choices=["aiohttp", "httpx"])
    parser.add_argument("--api", default="rest", choices=["rest", "scim"])
    args = parser.parse_args()
    upstream = Upstream(args.modyo_url, args.token, args.transport)
    uvicorn.run(
        create_scim_ceiling(upstream) if args.api == "scim" else create_ceiling(upstream),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
