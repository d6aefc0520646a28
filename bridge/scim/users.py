"""``/Users`` (RFC 7644 §3; Entra's requests R1-R14 in entra-scim-behaviour.md §2)."""

from __future__ import annotations

from typing import Any

from scim2_models import Context
from starlette.requests import Request
from starlette.responses import Response

from bridge.scim.context import ScimContext
from bridge.scim.endpoints import ResourceEndpoints
from bridge.scim.fast_paths import FastPaths
from bridge.scim.filters import CompiledFilter, user_filterable
from bridge.scim.mapping import user_json, user_resource, user_values
from bridge.scim.models import UserPatch, UserResponseParameters
from bridge.scim.queries import Parameters, Query, query_from_url
from bridge.scim.requests import check_operations, off_loop, patch_from, resource_from
from bridge.scim.responses import ScimResponse, list_response, no_content
from bridge.scim.user_patch import user_changes
from bridge.upstream import UserField, UserRecord
from bridge.yielding import batches


class UserEndpoints(ResourceEndpoints[UserRecord, UserField]):
    path = "/Users"
    resource_type = "User"
    parameters = UserResponseParameters

    def __init__(self, context: ScimContext) -> None:
        super().__init__(context)
        self.holding = context.served.user
        self.held = context.served.holds.user
        self.fast = FastPaths(context.served)
        self.filterable = user_filterable(context.served)

    async def create(self, request: Request) -> Response:
        """Create (RFC 7644 §3.3): 201 + ``Location``; a taken userName/email is 409."""
        body = await self.read_body(request)
        values = self.fast.user_values(body)
        if values is None:
            user = await off_loop(
                lambda: resource_from(body, self.holding, Context.RESOURCE_CREATION_REQUEST)
            )
            values = user_values(user, self.held)
        email = values.get(UserField.EMAIL)
        unique = [f"userName:{values[UserField.USER_NAME]}", *([f"email:{email}"] if email else [])]
        async with self.context.creating.hold(*unique):  # a concurrent twin waits, then gets 409
            record = await self.context.upstream.create_user(values)
        self.created(record.id)
        body = self._render(request, record, Context.RESOURCE_CREATION_RESPONSE)
        return ScimResponse(body, status_code=201, headers={"Location": body["meta"]["location"]})

    async def read(self, request: Request) -> Response:
        """Read by id (RFC 7644 §3.4.1); disabled users stay readable with ``active: false``."""
        query = query_from_url(request, self.parameters, self.context.max_page_size)
        record = await self.context.upstream.get_user(request.path_params["resource_id"])
        return ScimResponse(self._render(request, record, params=query.params))

    async def answer(self, request: Request, query: Query) -> Response:
        window = query.window
        if query.filter is None:
            page = await self.context.upstream.list_users(window.offset, window.count)
            total, records = page.total, page.items
        else:
            matched = await self.matching(query.filter)
            total, records = len(matched), matched[window.offset : window.offset + window.count]
        resources = [self._render(request, record, params=query.params) for record in records]
        return ScimResponse(list_response(resources, total, window.start_index))

    async def patch(self, request: Request) -> Response:
        """Modify (RFC 7644 §3.5.2), every Entra form; one upstream write, or a read if the
        PATCH changes nothing the upstream holds. 200 with the resource, as Microsoft's
        examples."""
        body = await self.read_body(request)
        check_operations(body, self.context.limits.max_patch_operations)
        changes = self.fast.user_changes(body)
        if changes is None:
            changes = await off_loop(
                lambda: user_changes(patch_from(body, UserPatch), self.holding)
            )
        user_id = request.path_params["resource_id"]
        upstream = self.context.upstream
        record = await (
            upstream.update_user(user_id, changes) if changes else upstream.get_user(user_id)
        )
        return ScimResponse(self._render(request, record, Context.RESOURCE_PATCH_RESPONSE))

    async def replace(self, request: Request) -> Response:
        """Replace (RFC 7644 §3.5.1): held attributes absent from the body are cleared."""
        body = await self.read_body(request)
        user = await off_loop(
            lambda: resource_from(body, self.holding, Context.RESOURCE_REPLACEMENT_REQUEST)
        )
        record = await self.context.upstream.update_user(
            request.path_params["resource_id"], user_values(user, self.held)
        )
        return ScimResponse(self._render(request, record, Context.RESOURCE_REPLACEMENT_RESPONSE))

    async def delete(self, request: Request) -> Response:
        """Delete (RFC 7644 §3.6): 204, then 404 on read and absent from queries."""
        await self.context.upstream.delete_user(request.path_params["resource_id"])
        return no_content()

    # ------------------------------------------------------------------ queries

    async def get(self, resource_id: str) -> UserRecord:
        return await self.context.upstream.get_user(resource_id)

    async def search_upstream(self, field: UserField, value: str) -> list[UserRecord]:
        return await self.context.upstream.search_users(field, value)

    async def scan_upstream(self, limit: int) -> list[UserRecord]:
        return await self.context.upstream.scan_users(limit)

    def held_value(self, record: UserRecord, field: UserField | None) -> str | None:
        held: dict[UserField | None, str | None] = {
            None: record.id,
            UserField.USER_NAME: record.user_name,
            UserField.EXTERNAL_ID: record.external_id,
            UserField.EMAIL: record.email,
        }
        return held[field]

    async def evaluate(
        self, compiled: CompiledFilter[UserField], candidates: list[UserRecord]
    ) -> list[UserRecord]:
        return [
            record
            async for batch in batches(candidates)
            for record in batch
            if compiled.matches(user_json(record, ""))
        ]

    # ------------------------------------------------------------------ rendering

    def _location(self, request: Request, record: UserRecord) -> str:
        return f"{self.context.base_url(request)}/Users/{record.id}"

    def _render(
        self,
        request: Request,
        record: UserRecord,
        context: Context = Context.RESOURCE_QUERY_RESPONSE,
        params: Parameters | None = None,
    ) -> dict[str, Any]:
        location = self._location(request, record)
        if params is None or not (params.attributes or params.excluded_attributes):
            return user_json(record, location)
        dumped: dict[str, Any] = user_resource(record, location).model_dump(
            scim_ctx=context, response_parameters=params
        )
        return dumped
