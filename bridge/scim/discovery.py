"""Discovery (RFC 7644 §4): ``/ServiceProviderConfig``, ``/ResourceTypes``, ``/Schemas``.

They describe exactly what the bridge supports: the schemas list only the attributes the
upstream holds (``bridge.scim.attributes``; the others are accepted and ignored), so a client
(scim2-tester, Microsoft's validator, Entra's gallery suite) tests what is real. Group support
is advertised here, which is how Entra's validation detects it (docs/design/entra.md, Validators).
"""

from __future__ import annotations

from typing import Any, Final

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    ETag,
    Filter,
    Group,
    Mutability,
    NotFoundException,
    NotImplementedException,
    Patch,
    Required,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    Sort,
    Uniqueness,
    User,
)
from scim2_models import Meta as ScimMeta
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.scim.attributes import SchemaKeep
from bridge.scim.context import ScimContext
from bridge.scim.endpoints import method_route
from bridge.scim.models import BridgeUser
from bridge.scim.responses import ScimResponse, list_response

_SUB_ATTRIBUTE_CHANGES: Final[dict[str, dict[str, dict[str, Any]]]] = {
    # Modyo holds one email, the work one, and needs an address.
    "emails": {"type": {"canonical_values": ["work"]}, "value": {"required": Required.true}},
    # A member's display name is Modyo's, whatever a client sends.
    "members": {"display": {"mutability": Mutability.read_only}},
}


def _trimmed(model: type[User[Any]] | type[Group], keep: SchemaKeep) -> Schema:
    schema: Schema = model.to_schema()
    attributes = []
    for attribute in schema.attributes or ():
        if attribute.name is None or attribute.name not in keep:
            continue
        subs = keep[attribute.name]
        update: dict[str, Any] = {}
        if subs is not None:
            update["sub_attributes"] = [s for s in attribute.sub_attributes or () if s.name in subs]
        if attribute.name in ("userName", "displayName"):
            update["uniqueness"] = Uniqueness.server  # Entra matches on them (§6)
        if attribute.name in ("emails", "active"):
            update["required"] = Required.true  # Modyo needs an email; active is always set
        if attribute.name in _SUB_ATTRIBUTE_CHANGES:
            changes = _SUB_ATTRIBUTE_CHANGES[attribute.name]
            update["sub_attributes"] = [
                s.model_copy(update=changes.get(s.name, {})) for s in update["sub_attributes"]
            ]
        attributes.append(attribute.model_copy(update=update))
    return schema.model_copy(update={"attributes": attributes})


class DiscoveryEndpoints:
    def __init__(self, context: ScimContext) -> None:
        self.context = context
        self._schemas = [
            _trimmed(BridgeUser, context.served.user_schema),
            _trimmed(Group, context.served.group_schema),
        ]

    def routes(self) -> list[Route]:
        return [
            method_route("/ServiceProviderConfig", None,
                         GET=("discovery.service_provider_config", self.service_provider_config)),
            method_route("/ResourceTypes", None,
                         GET=("discovery.resource_types", self.resource_types)),
            method_route("/ResourceTypes/{name}", None,
                         GET=("discovery.resource_type", self.resource_type)),
            method_route("/Schemas", None, GET=("discovery.schemas", self.schemas)),
            method_route("/Schemas/{schema_id:path}", None, GET=("discovery.schema", self.schema)),
            method_route("/.search", None, POST=("search", self.search_everything)),
        ]  # fmt: skip

    async def service_provider_config(self, request: Request) -> Response:
        """RFC 7643 §5: PATCH and filters yes; bulk, sort, ETags, password change no."""
        base = self.context.base_url(request)
        config = ServiceProviderConfig(
            patch=Patch(supported=True),
            bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
            filter=Filter(supported=True, max_results=self.context.max_page_size),
            change_password=ChangePassword(supported=False),
            sort=Sort(supported=False),
            etag=ETag(supported=False),
            authentication_schemes=[
                AuthenticationScheme(
                    type="oauthbearertoken",
                    name="OAuth Bearer Token",
                    description="The Secret Token configured in Entra, sent as "
                    "'Authorization: Bearer <token>'",
                    primary=True,
                )
            ],
            meta=ScimMeta(
                resource_type="ServiceProviderConfig",
                location=f"{base}/ServiceProviderConfig",
            ),
        )
        return ScimResponse(config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))

    async def resource_types(self, request: Request) -> Response:
        resources = [self._resource_type_body(request, rt) for rt in self._resource_types()]
        return ScimResponse(list_response(resources, len(resources), 1))

    async def resource_type(self, request: Request) -> Response:
        for resource_type in self._resource_types():
            if resource_type.id == request.path_params["name"]:
                return ScimResponse(self._resource_type_body(request, resource_type))
        raise NotFoundException(detail=f"no resource type {request.path_params['name']!r}")

    async def schemas(self, request: Request) -> Response:
        resources = [self._schema_body(request, schema) for schema in self._schemas]
        return ScimResponse(list_response(resources, len(resources), 1))

    async def schema(self, request: Request) -> Response:
        for schema in self._schemas:
            if schema.id == request.path_params["schema_id"]:
                return ScimResponse(self._schema_body(request, schema))
        raise NotFoundException(detail=f"no schema {request.path_params['schema_id']!r}")

    async def search_everything(self, request: Request) -> Response:
        """RFC 7644 §3.4.3 lets a server decline a search across resource types: 501."""
        raise NotImplementedException(
            detail="use /Users/.search or /Groups/.search: no search across resource types"
        )

    @staticmethod
    def _resource_types() -> list[ResourceType]:
        return [
            ResourceType(
                id="User", name="User", endpoint="/Users",
                description="Modyo team members", schema_=str(User.__schema__),
            ),
            ResourceType(
                id="Group", name="Group", endpoint="/Groups",
                description="Modyo team groups", schema_=str(Group.__schema__),
            ),
        ]  # fmt: skip

    def _resource_type_body(self, request: Request, resource_type: ResourceType) -> dict[str, Any]:
        return self._with_meta(request, resource_type, "ResourceType", resource_type.id)

    def _schema_body(self, request: Request, schema: Schema) -> dict[str, Any]:
        return self._with_meta(request, schema, "Schema", schema.id)

    def _with_meta(self, request: Request, described: Any, kind: str, key: Any) -> dict[str, Any]:
        """A discovery resource with its ``meta`` (RFC 7644 §4: resourceType and location)."""
        location = f"{self.context.base_url(request)}/{kind}s/{key}"
        with_meta = described.model_copy(
            update={"meta": ScimMeta(resource_type=kind, location=location)}
        )
        body: dict[str, Any] = with_meta.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        return body
