"""``/Users`` (RFC 7644 §3; Entra's requests R1-R14 in entra-scim-behaviour.md §2)."""

from __future__ import annotations

from typing import Any

from scim2_models import Context
from starlette.requests import Request
from starlette.responses import Response

from bridge.scim.fast_paths import fast_user_changes, fast_user_values
from bridge.scim.filters import ID, user_lookup
from bridge.scim.models import UserPatch, UserResponseParameters
from bridge.scim.responses import ScimResponse, no_content
from bridge.scim.site import Query, ResourceEndpoints, list_response, query_from_url
from bridge.scim.user_patch import user_changes
from bridge.translate import USER_HOLDING, user_json, user_resource, user_values
from bridge.upstream import NotFound, UserField, UserRecord


class UserEndpoints(ResourceEndpoints):
    path = "/Users"
    parameters = UserResponseParameters

    async def create(self, request: Request) -> Response:
        """Create (RFC 7644 §3.3): 201 + ``Location``; a taken userName/email is 409."""
        body = await self.site.read(request)
        values = fast_user_values(body)
        if values is None:
            user = self.site.validate(body, USER_HOLDING, Context.RESOURCE_CREATION_REQUEST)
            values = user_values(user)
        email = values[UserField.EMAIL]
        unique = [f"userName:{values[UserField.USER_NAME]}", *([f"email:{email}"] if email else [])]
        async with self.site.creating.hold(*unique):  # a concurrent twin waits, then gets 409
            record = await self.site.modyo.create_user(values)
        body = self._render(request, record, Context.RESOURCE_CREATION_RESPONSE)
        return ScimResponse(body, status_code=201, headers={"Location": body["meta"]["location"]})

    async def read(self, request: Request) -> Response:
        """Read by id (RFC 7644 §3.4.1); disabled users stay readable with ``active: false``."""
        query = query_from_url(request, self.parameters, self.site.max_page_size)
        record = await self.site.modyo.get_user(request.path_params["resource_id"])
        return ScimResponse(self._render(request, record, params=query.params))

    async def answer(self, request: Request, query: Query) -> Response:
        window = query.window
        if query.filter is None:
            page = await self.site.modyo.list_users(window.offset, window.count)
            total, records = page.total, page.items
        else:
            matched = await self._matching(request, query.filter)
            total, records = len(matched), matched[window.offset : window.offset + window.count]
        resources = [self._render(request, record, params=query.params) for record in records]
        return ScimResponse(list_response(resources, total, window.start_index))

    async def patch(self, request: Request) -> Response:
        """Modify (RFC 7644 §3.5.2), every Entra form; one upstream write, or a read if the
        PATCH changes nothing Modyo holds. 200 with the resource, as Microsoft's examples."""
        body = await self.site.read(request)
        changes = fast_user_changes(body)
        if changes is None:
            changes = user_changes(self.site.validate_patch(body, UserPatch))
        user_id = request.path_params["resource_id"]
        modyo = self.site.modyo
        record = await (modyo.update_user(user_id, changes) if changes else modyo.get_user(user_id))
        return ScimResponse(self._render(request, record, Context.RESOURCE_PATCH_RESPONSE))

    async def replace(self, request: Request) -> Response:
        """Replace (RFC 7644 §3.5.1): held attributes absent from the body are cleared."""
        user = await self.site.parse(request, USER_HOLDING, Context.RESOURCE_REPLACEMENT_REQUEST)
        record = await self.site.modyo.update_user(
            request.path_params["resource_id"], user_values(user)
        )
        return ScimResponse(self._render(request, record, Context.RESOURCE_REPLACEMENT_RESPONSE))

    async def delete(self, request: Request) -> Response:
        """Delete (RFC 7644 §3.6): 204, then 404 on read and absent from queries."""
        await self.site.modyo.delete_user(request.path_params["resource_id"])
        return no_content()

    async def _matching(self, request: Request, text: str) -> list[UserRecord]:
        """Ask Modyo for candidates on one field, keep those matching the whole filter."""
        lookup = user_lookup(text)
        if lookup.field == ID:
            try:
                candidates = [await self.site.modyo.get_user(lookup.value)]
            except NotFound:
                candidates = []
        else:
            assert isinstance(lookup.field, UserField)
            candidates = await self.site.modyo.search_users(lookup.field, lookup.value)
        if lookup.binding is not None:  # one comparison: compare the held value directly
            return [r for r in candidates if lookup.equals(_held_value(r, lookup.field))]
        base = self.site.base_url(request)
        return [
            record
            for record in candidates
            if lookup.filter.match(user_resource(record, f"{base}/Users/{record.id}"))
        ]

    def _render(
        self,
        request: Request,
        record: UserRecord,
        context: Context = Context.RESOURCE_QUERY_RESPONSE,
        params: Any = None,
    ) -> dict[str, Any]:
        location = f"{self.site.base_url(request)}/Users/{record.id}"
        if params is None or not (params.attributes or params.excluded_attributes):
            return user_json(record, location)
        resource = user_resource(record, location)
        dumped: dict[str, Any] = resource.model_dump(scim_ctx=context, response_parameters=params)
        return dumped


def _held_value(record: UserRecord, field: UserField | str) -> str | None:
    held: dict[UserField | str, str | None] = {
        ID: record.id,
        UserField.USER_NAME: record.user_name,
        UserField.EXTERNAL_ID: record.external_id,
        UserField.EMAIL: record.email,
    }
    return held[field]
