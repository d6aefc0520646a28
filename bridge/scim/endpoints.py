"""The shape every resource type's endpoints share (RFC 7644 §3): the routes ``/<Type>``,
``/<Type>/.search`` and ``/<Type>/{resource_id}``, each naming the SCIM operation it serves,
and filtered queries: the candidates from upstream lookups (or, for a filter no lookup can
narrow, the whole listing up to ``scim.max_filter_scan``), then the exact filter on each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from scim2_models import NotFoundException, ResponseParameters, TooManyException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge import request_state
from bridge.scim.context import ScimContext
from bridge.scim.filters import CompiledFilter, Filterable, Lookup, compile_filter
from bridge.scim.queries import Query, query_from_body, query_from_url
from bridge.scim.requests import read_json_object
from bridge.upstream import GroupField, NotFound, TooMany, UserField, is_safe_id
from bridge.yielding import batches

R = TypeVar("R")  # an upstream record
F = TypeVar("F", UserField, GroupField)  # the fields it is searched by
Endpoint = Callable[[Request], Awaitable[Response]]


def method_route(path: str, resource_type: str | None, **handlers: tuple[str, Endpoint]) -> Route:
    """One route per path, so a 405 lists every allowed method in ``Allow``. Each handler is
    ``(operation, endpoint)``; the operation and the resource the path names are recorded for
    error mapping, idempotency and the access log."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        operation, handler = handlers[method]
        resource_id = request.path_params.get("resource_id")
        safe = resource_id is None or is_safe_id(resource_id)
        state = request_state.current()
        if state is not None:
            state.operation, state.resource_type = operation, resource_type
            state.resource_id = resource_id if safe else None
        if not safe:  # no upstream holds it: asked of none, in either mode
            raise NotFoundException(detail=f"{resource_type or 'resource'} not found")
        return await handler(request)

    return Route(path, endpoint, methods=list(handlers))


class ResourceEndpoints(Generic[R, F]):
    """The routes and queries of one resource type; subclasses answer them."""

    path: str  # "/Users"
    resource_type: str  # "User"
    parameters: type[ResponseParameters[Any]]
    filterable: Filterable[F]

    def __init__(self, context: ScimContext) -> None:
        self.context = context

    def routes(self) -> list[Route]:
        name = self.path.strip("/").lower()
        return [
            method_route(self.path, self.resource_type,
                         GET=(f"{name}.query", self.search), POST=(f"{name}.create", self.create)),
            method_route(f"{self.path}/.search", self.resource_type,
                         POST=(f"{name}.search", self.search_by_post)),
            method_route(
                f"{self.path}/{{resource_id}}",
                self.resource_type,
                GET=(f"{name}.read", self.read),
                PATCH=(f"{name}.patch", self.patch),
                PUT=(f"{name}.replace", self.replace),
                DELETE=(f"{name}.delete", self.delete),
            ),
        ]  # fmt: skip

    async def search(self, request: Request) -> Response:
        """Query (RFC 7644 §3.4.2): always a ListResponse, ``totalResults: 0`` when nothing
        matches (Entra creates the resource then)."""
        return await self.answer(
            request, query_from_url(request, self.parameters, self.context.max_page_size)
        )

    async def search_by_post(self, request: Request) -> Response:
        """The same query as a POST ``/.search`` body (RFC 7644 §3.4.3)."""
        body = await self.read_body(request)
        return await self.answer(
            request, query_from_body(body, self.parameters, self.context.max_page_size)
        )

    @staticmethod
    def created(resource_id: str) -> None:
        """Record the resource a create made (idempotency, the access log)."""
        state = request_state.current()
        if state is not None:
            state.resource_id = resource_id

    async def read_body(self, request: Request) -> dict[str, Any]:
        return await read_json_object(request, self.context.limits.max_json_values)

    async def matching(self, text: str) -> list[R]:
        """The records matching a filter (RFC 7644 §3.4.2.2), in a stable order: the
        candidates the upstream finds, each then checked against the whole filter."""
        limits = self.context.limits
        compiled = compile_filter(
            text, self.filterable, limits.max_filter_length, limits.max_filter_comparisons
        )
        if compiled.lookups is None:
            candidates = await self._scan()
        else:
            candidates = await self._look_up(compiled.lookups)
        if compiled.binding is not None:  # one comparison: compare the held value directly
            assert compiled.lookups is not None
            field = compiled.lookups[0].field
            return [
                record
                async for batch in batches(candidates)
                for record in batch
                if compiled.equals(self.held_value(record, field))
            ]
        return await self.evaluate(compiled, candidates)

    async def _look_up(self, lookups: tuple[Lookup[F], ...]) -> list[R]:
        found: dict[str | None, R] = {}
        for lookup in lookups:
            if lookup.field is None and not is_safe_id(lookup.value):
                continue  # no resource has such an id: nothing to read
            if lookup.field is None:
                try:
                    records = [await self.get(lookup.value)]
                except NotFound:
                    records = []
            else:
                records = await self.search_upstream(lookup.field, lookup.value)
            for record in records:
                found.setdefault(self.held_value(record, None), record)
        return list(found.values())

    async def _scan(self) -> list[R]:
        """Every record, for a filter no lookup narrows; beyond ``scim.max_filter_scan`` the
        answer is 400 ``tooMany`` (RFC 7644 §3.12), known from the listing's first page."""
        limit = self.context.max_filter_scan
        try:
            return await self.scan_upstream(limit)
        except TooMany as too_many:
            raise TooManyException(
                detail=f"this filter cannot be searched upstream and would be evaluated over "
                f"all {too_many.total} {self.resource_type.lower()}s, more than the "
                f"{limit} allowed (scim.max_filter_scan); narrow it with an 'eq' on one of "
                f"{self.filterable.searched}, joined by 'and'"
            ) from None

    # ------------------------------------------------------------------ per resource type

    async def get(self, resource_id: str) -> R:
        raise NotImplementedError

    async def search_upstream(self, field: F, value: str) -> list[R]:
        raise NotImplementedError

    async def scan_upstream(self, limit: int) -> list[R]:
        raise NotImplementedError

    def held_value(self, record: R, field: F | None) -> str | None:
        """The record's value of ``field`` (None: its id)."""
        raise NotImplementedError

    async def evaluate(self, compiled: CompiledFilter[F], candidates: list[R]) -> list[R]:
        """The candidates matching the filter, each evaluated over its rendered resource."""
        raise NotImplementedError

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


class CaseInsensitivePaths:
    """ASGI middleware: the literal segments of a path in any case name the endpoint spelled
    in the routes (``/users`` is ``/Users``, ``/users/.SEARCH`` is ``/Users/.search``), as
    Microsoft's reference server matches them (RFC 7643 §2.1 makes attribute names
    case-insensitive; clients carry that over to resource paths). Only the positions the
    routes hold literals in are read, so an id is left as sent, whatever it spells. Runs
    before the idempotency cache, so a retry in another case is the same request."""

    def __init__(self, app: ASGIApp, routes: Iterable[Route]) -> None:
        self.app = app
        self._names: dict[tuple[int, str], str] = {}
        for route in routes:
            for position, part in enumerate(route.path.split("/")):
                if part and not part.startswith("{"):
                    self._names[(position, part.lower())] = part

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, root = str(scope["path"]), str(scope.get("root_path", ""))
            relative = path[len(root) :] if path.startswith(root) else path
            canonical = "/".join(
                self._names.get((position, part.lower()), part)
                for position, part in enumerate(relative.split("/"))
            )
            if canonical != relative:
                full = root + canonical if path.startswith(root) else canonical
                scope = {**scope, "path": full, "raw_path": full.encode()}
        await self.app(scope, receive, send)
