"""Path-less ``add`` and ``replace`` (RFC 7644 §3.5.2.1, §3.5.2.3) as one operation per key.

Entra's compliant mode (``aadOptscim062020``) sends a multi-attribute update as one path-less
``replace`` whose keys are attribute paths: dotted (``name.givenName``), URN-prefixed
(``urn:…:enterprise:2.0:User:department``) or with a value filter
(``emails[type eq "work"].value``) (docs/design/entra.md, The two PATCH dialects). RFC 7644 reads a
path-less value's keys as attributes of the resource, so each key is resolved as a full
attribute path: the operation becomes one per key, each then treated exactly like an
operation that came with that path (held and applied, unheld and ignored, or refused as
``invalidPath`` when it does not parse).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from pydantic import ValidationError
from scim2_models import Context, PatchOp, PatchOperation, Resource

from bridge.scim.errors import from_validation
from bridge.scim.models import ENTRA_POLICY

R = TypeVar("R", bound=Resource[Any])


def expanded(patch: PatchOp[R], model: type[R]) -> Iterator[PatchOperation[R]]:
    """The operations of ``patch``, path-less add/replace values split into one per key."""
    for operation in patch.operations or ():
        if operation.path is not None or not isinstance(operation.value, dict):
            yield operation
            continue
        if operation.op not in (PatchOperation.Op.add, PatchOperation.Op.replace_):
            yield operation
            continue
        for key, value in operation.value.items():
            try:
                yield PatchOperation[model].model_validate(  # type: ignore[valid-type]
                    {"op": operation.op.value, "path": key, "value": value},
                    scim_ctx=Context.RESOURCE_PATCH_REQUEST,
                    scim_policy=ENTRA_POLICY,
                )
            except ValidationError as exc:  # a key that is no path, an add of null...
                raise from_validation(exc) from None
