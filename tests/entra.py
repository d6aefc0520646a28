"""Requests exactly as Microsoft Entra ID sends them (docs/design/entra.md)."""

from __future__ import annotations

from typing import Any

PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
MS_GROUP_URN = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def user(
    user_name: str,
    *,
    external_id: str | None = None,
    given: str = "Test",
    family: str = "User",
    email: str | None = None,
    active: bool = True,
) -> dict[str, Any]:
    """R5, "Create User" as Entra sends it after a zero-match query."""
    return {
        "schemas": [USER_URN, ENTERPRISE_URN],
        "externalId": external_id or f"ext-{user_name}",
        "userName": user_name,
        "active": active,
        "emails": [{"primary": True, "type": "work", "value": email or user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": f"{given} {family}", "familyName": family, "givenName": given},
        "roles": [],
    }


def legacy_user(user_name: str) -> dict[str, Any]:
    """R5, Example 2: explicit nulls and the malformed enterprise schema URN."""
    payload = user(user_name)
    payload["schemas"] = [USER_URN, "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"]
    payload.update(addresses=None, phoneNumbers=None, title=None, department=None, manager=None)
    return payload


def group(display_name: str, *, external_id: str | None = None) -> dict[str, Any]:
    """R16, "Create Group": Microsoft's extra schema URN, no members."""
    return {
        "schemas": [GROUP_URN, MS_GROUP_URN],
        "externalId": external_id or f"obj-{display_name}",
        "displayName": display_name,
        "meta": {"resourceType": "Group"},
    }


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_URN], "Operations": list(operations)}


def op(
    name: str, path: str | None = None, value: Any = None, *, no_value: bool = False
) -> dict[str, Any]:
    operation: dict[str, Any] = {"op": name}
    if path is not None:
        operation["path"] = path
    if not no_value:
        operation["value"] = value
    return operation


def members(*ids: str) -> list[dict[str, Any]]:
    """R19/R20 member values: ``{"$ref": null, "value": id}``."""
    return [{"$ref": None, "value": member_id} for member_id in ids]
