"""What every SCIM endpoint needs: the upstream, the limits, and how to spell its own URLs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import ValidationError
from scim2_models import Context, InvalidValueException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.scim.errors import from_validation
from bridge.scim.locks import KeyedLocks
from bridge.scim.models import ENTRA_POLICY
from bridge.scim.requests import ListParams, list_params, read_json_object
from bridge.scim.unheld import Holding
from bridge.upstream import Upstream


@dataclass(slots=True)
class ScimSite:
    """Shared by the endpoints of one app; ``upstream`` is set when the app starts."""

    max_body_bytes: int
    max_page_size: int
    public_url: str | None
    upstream: Upstream | None = None
    creating: KeyedLocks = field(default_factory=KeyedLocks)

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

    async def parse(self, request: Request, holding: Holding, context: Context) -> Any:
        """The body, without what Modyo cannot hold, validated under Entra's policy (SCIM 400
        on any problem). ``holding`` names the resource type."""
        return self.validate(await self.read(request), holding, context)

    @staticmethod
    def validate(payload: dict[str, Any], holding: Holding, context: Context) -> Any:
        """:meth:`parse` for a body already read."""
        body = holding.body(payload)
        try:
            resource = holding.model.model_validate(
                body, scim_ctx=context, scim_policy=ENTRA_POLICY
            )
        except ValidationError as exc:
            raise from_validation(exc) from None
        holding.note_sub_attributes(resource)
        return resource

    async def read(self, request: Request) -> dict[str, Any]:
        return await read_json_object(request, self.max_body_bytes)

    @staticmethod
    def validate_patch(body: dict[str, Any], patch_model: Any) -> Any:
        """A PatchOp body (RFC 7644 §3.5.2) validated under Entra's policy."""
        try:
            return patch_model.model_validate(
                body, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=ENTRA_POLICY
            )
        except ValidationError as exc:
            raise from_validation(exc) from None


@dataclass(frozen=True, slots=True)
class Query:
    """A query (RFC 7644 §3.4.2): filter, window, and which attributes to return."""

    filter: str | None
    window: ListParams
    params: Any  # ResponseParameters of the resource type


def query_from_url(request: Request, parameters_model: Any, max_page_size: int) -> Query:
    """GET ``?filter=&startIndex=&count=&attributes=&excludedAttributes=`` (others ignored)."""
    get = request.query_params.get
    return Query(
        filter=get("filter"),
        window=list_params(get("startIndex"), get("count"), max_page_size),
        params=response_parameters(parameters_model, get("attributes"), get("excludedAttributes")),
    )


async def query_from_body(site: ScimSite, request: Request, parameters_model: Any) -> Query:
    """POST ``/.search`` (RFC 7644 §3.4.3): the same query as a SearchRequest body."""
    body = {key.lower(): value for key, value in (await site.read(request)).items()}
    attributes, excluded = body.get("attributes"), body.get("excludedattributes")
    if body.get("filter") is not None and not isinstance(body["filter"], str):
        raise InvalidValueException(detail="filter must be a string")
    return Query(
        filter=body.get("filter"),
        window=list_params(body.get("startindex"), body.get("count"), site.max_page_size),
        params=response_parameters(parameters_model, _joined(attributes), _joined(excluded)),
    )


@lru_cache(maxsize=256)
def response_parameters(model: Any, attributes: str | None, excluded: str | None) -> Any:
    """``attributes`` / ``excludedAttributes`` (RFC 7644 §3.9), comma-separated; None when
    neither is given. Building the model costs ~40 µs, and Entra sends the same
    ``excludedAttributes=members`` on every group read, so results are cached (bounded; the
    models are never modified)."""
    if not attributes and not excluded:
        return None
    try:
        return model(
            attributes=_names(attributes) or None,
            excluded_attributes=_names(excluded) or None,
        )
    except ValidationError as exc:
        raise from_validation(exc) from None


def _joined(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    raise InvalidValueException(detail="attributes must be a list of attribute names")


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


class ResourceEndpoints:
    """The routes and queries a resource type shares (RFC 7644 §3): ``/<Type>``,
    ``/<Type>/.search`` and ``/<Type>/{resource_id}``; subclasses answer them."""

    path: str
    parameters: Any  # the ResponseParameters model of the resource type

    def __init__(self, site: ScimSite) -> None:
        self.site = site

    def routes(self) -> list[Route]:
        return [
            method_route(self.path, GET=self.search, POST=self.create),
            method_route(f"{self.path}/.search", POST=self.search_by_post),
            method_route(
                f"{self.path}/{{resource_id}}",
                GET=self.read,
                PATCH=self.patch,
                PUT=self.replace,
                DELETE=self.delete,
            ),
        ]

    async def search(self, request: Request) -> Response:
        """Query (RFC 7644 §3.4.2): always a ListResponse, ``totalResults: 0`` when nothing
        matches (Entra creates the resource then)."""
        return await self.answer(
            request, query_from_url(request, self.parameters, self.site.max_page_size)
        )

    async def search_by_post(self, request: Request) -> Response:
        """The same query as a POST ``/.search`` body (RFC 7644 §3.4.3)."""
        return await self.answer(
            request, await query_from_body(self.site, request, self.parameters)
        )

    async def answer(self, request: Request, query: Query) -> Response:
        raise NotImplementedError

    async def create(self, request: Request) -> Response:
        raise NotImplementedError

    async def read(self, request: Request) -> Response:
        raise NotImplementedError

    async def patch(self, request: Request) -> Response:
        raise NotImplementedError

    async def replace(self, request: Request) -> Response:
        raise NotImplementedError

    async def delete(self, request: Request) -> Response:
        raise NotImplementedError
