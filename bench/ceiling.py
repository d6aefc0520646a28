"""The ceiling: a minimal passthrough proxy making the Modyo calls each benchmarked operation
minimally needs under docs/modyo-contract.md, with the bridge's own HTTP client and transport,
and no SCIM work (no validation, mapping, filter parsing or error handling).

    python -m bench.ceiling --port 8002 --modyo-url http://127.0.0.1:8001 --token T
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from pydantic import AnyHttpUrl, SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.config import ModyoSettings
from bridge.modyo.http import build_http_client

API = "/api/admin"
ORDER = {"per_page": "100", "sort_by": "id", "order": "asc"}


def create_ceiling(modyo: ModyoSettings) -> Starlette:
    http: httpx.AsyncClient

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal http
        async with build_http_client(modyo) as client:
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

    return Starlette(
        routes=[
            Route("/scim/Users", users, methods=["GET", "POST"]),
            Route("/scim/scan/Users", scan, methods=["GET"]),
            Route("/scim/Users/{user_id}", user, methods=["GET", "PATCH"]),
            Route("/scim/Groups", groups, methods=["GET"]),
            Route("/scim/Groups/{group_id}", group, methods=["PATCH"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--modyo-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--transport", default="aiohttp", choices=["aiohttp", "httpx"])
    args = parser.parse_args()
    settings = ModyoSettings(
        base_url=AnyHttpUrl(args.modyo_url), token=SecretStr(args.token), transport=args.transport
    )
    uvicorn.run(
        create_ceiling(settings),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
