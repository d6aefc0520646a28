"""Attributes Modyo cannot hold: accepted and ignored, logged once per attribute name.

Rejecting them would make Entra retry the operation forever; storing them is impossible.
The set of names already logged is bounded, so random attribute names cannot grow memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from typing import Any, Final

from scim2_models import SCIMException

log = logging.getLogger("bridge.scim")
MAX_REMEMBERED: Final = 1024
_ALWAYS_ACCEPTED: Final = frozenset({"schemas", "id", "meta"})
_seen: set[tuple[str, str]] = set()
_lock = threading.Lock()


def note_unheld(resource: str, attribute: str) -> None:
    """Log (once per process and attribute) that ``attribute`` was accepted but not stored."""
    key = (resource, attribute.lower())
    with _lock:
        if key in _seen or len(_seen) >= MAX_REMEMBERED:
            return
        _seen.add(key)
    log.warning(
        "attribute not held by Modyo: accepted and ignored",
        extra={"resource": resource, "attribute": attribute},
    )


def note_unheld_in(resource: str, model: Any, held: Collection[tuple[str, str | None]]) -> None:
    """Note every attribute a validated POST/PUT body set that is not in ``held``."""
    for name in model.model_fields_set - _ALWAYS_ACCEPTED:
        value = getattr(model, name)
        if value is None or value == []:
            continue
        if (name, None) not in held:
            note_unheld(resource, name)
            continue
        entries = value if isinstance(value, list) else [value]
        for entry in entries:
            for sub in getattr(entry, "model_fields_set", ()):
                if getattr(entry, sub) is not None and (name, sub) not in held:
                    note_unheld(resource, f"{name}.{sub}")
    for name in getattr(model, "unknown_attributes", None) or ():
        note_unheld(resource, str(name))


def held_part(resource: str, operation: Any, path_class: Any, is_held: Any) -> Any | None:
    """A PATCH operation restricted to held attributes (None if it touches none of them).

    ``is_held(path)`` decides for a parsed path; a path-less operation keeps only the keys of
    its value that are held. The others are noted and dropped, before scim2-models sees them,
    so an unheld attribute's value (a bare-string manager, say) can never fail the request.
    """
    if operation.path is not None:
        if is_held(operation.path):
            return operation
        note_unheld(resource, str(operation.path))
        return None
    if not isinstance(operation.value, dict):
        return operation  # scim2-models refuses a path-less value that is not an object
    held = {}
    for key, value in operation.value.items():
        try:
            keep = key.lower() == "schemas" or is_held(path_class(key))
        except SCIMException:
            keep = False
        if keep:
            held[key] = value
        else:
            note_unheld(resource, key)
    return operation.model_copy(update={"value": held}) if held else None
