"""The HTTP server layer alone, for ``python -m bench``'s ``parsers`` section:
``python -m bench.layer --port P --server {uvicorn,bridge} --parser {httptools,h11}``.

A trivial ASGI app (reads the body, answers ``{}``) under plain uvicorn, or under the
bridge's server layer (``bridge.edge.protocols`` and ``bridge.edge.body.BodyReader``, as
``scim-bridge serve`` runs them), so the CPU each spends per request is the layer's own.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.types import Receive, Scope, Send

from bridge.config import ServerSettings
from bridge.edge.body import BodyBudget, BodyReader
from bridge.run.server import Server, loop_name, server_config


async def trivial(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/scim+json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=["uvicorn", "bridge"], required=True)
    parser.add_argument("--parser", choices=["httptools", "h11"], required=True)
    args = parser.parse_args()
    if args.server == "uvicorn":
        uvicorn.run(
            trivial,
            host="127.0.0.1",
            port=args.port,
            http=args.parser,
            loop=loop_name(),
            log_level="warning",
            access_log=False,
        )
        return
    settings = ServerSettings(port=args.port, http_parser=args.parser, log_level="warning")
    budget = BodyBudget(settings.max_buffered_body_bytes)
    Server(server_config(BodyReader(trivial, settings, budget), settings)).run()


if __name__ == "__main__":
    main()
