"""What every SCIM endpoint needs: the upstream, the limits, and how to spell its own URLs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from scim2_models import Context
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.scim.errors import from_validation
from bridge.scim.models import ENTRA_POLICY
from bridge.scim.requests import read_json_object
from bridge.upstream import Upstream


@dataclass(slots=True)
class ScimSite:
    """Shared by the endpoints of one app; ``upstream`` is set when the app starts."""

    max_body_bytes: int
    max_page_size: int
    public_url: str | None
    upstream: Upstream | None = None

    @property
    def modyo(self) -> Upstream:
        assert self.upstream is not None, "the app's lifespan has not started"
        return self.upstream

    def base_url(self, request: Request) -> str:
        """The Tenant URL as Entra uses it (``https://host/scim``), for ``Location`` and
        ``meta.location``. Behind a TLS proxy, ``server.public_url`` (or forwarded headers)
        make it the public one."""
        root = str(request.scope.get("root_path", ""))
        if self.public_url:
            return self.public_url.rstrip("/") + root
        return f"{request.url.scheme}://{request.url.netloc}{root}"

    async def parse(self, request: Request, model: Any, context: Context) -> Any:
        """The body validated as ``model`` under Entra's policy; SCIM 400 on any problem."""
        body = await read_json_object(request, self.max_body_bytes)
        try:
            return model.model_validate(body, scim_ctx=context, scim_policy=ENTRA_POLICY)
        except ValidationError as exc:
            raise from_validation(exc) from None


def response_parameters(request: Request, model: Any) -> Any:
    """``attributes`` / ``excludedAttributes`` (RFC 7644 §3.9), comma-separated."""
    attributes = request.query_params.get("attributes")
    excluded = request.query_params.get("excludedAttributes")
    try:
        return model(
            attributes=_names(attributes) or None,
            excluded_attributes=_names(excluded) or None,
        )
    except ValidationError as exc:
        raise from_validation(exc) from None


def _names(raw: str | None) -> list[str]:
    return [name.strip() for name in (raw or "").split(",") if name.strip()]


def list_response(resources: list[dict[str, Any]], total: int, start_index: int) -> dict[str, Any]:
    """RFC 7644 §3.4.2: a ListResponse, also for zero results (Entra's "no match")."""
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


Endpoint = Callable[[Request], Awaitable[Response]]


def method_route(path: str, **handlers: Endpoint) -> Route:
    """One route per path, so a 405 lists every allowed method in ``Allow``."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, endpoint, methods=list(handlers))
