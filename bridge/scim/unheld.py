"""Attributes Modyo cannot hold: accepted and ignored, logged once per attribute name.

Rejecting them would make Entra retry the operation forever; storing them is impossible. They
are dropped *before* scim2-models validates a body or applies a PATCH, so a value the library
would refuse (a bare-string ``manager``, say) can never fail a request. The set of names
already logged and the cache of resolved paths are bounded in entries and each entry in
length, so random attribute names cannot grow memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Generic, TypeVar

from scim2_models import BaseModel, PatchOperation, Path, SCIMException

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger("bridge.scim")
MAX_REMEMBERED: Final = 1024
MAX_KEPT_TEXT: Final = 256
"""Longest attribute text cached or remembered (no attribute path comes near it: the
longest, an extension's URN and attribute, has about 80 characters); a longer one is
resolved every time, and logged cut to this length."""
_KEPT_KEYS: Final = frozenset({"schemas"})
_seen: set[tuple[str, str]] = set()
_lock = threading.Lock()


def note_unheld(resource: str, attribute: str) -> None:
    """Log (once per process and attribute) that ``attribute`` was accepted but not stored."""
    attribute = attribute[:MAX_KEPT_TEXT]
    key = (resource, attribute.lower())
    with _lock:
        if key in _seen or len(_seen) >= MAX_REMEMBERED:
            return
        _seen.add(key)
    log.warning(
        "attribute not held by Modyo: accepted and ignored",
        extra={"resource": resource, "attribute": attribute},
    )


def _holds(holding: Holding[Any], text: str) -> bool:
    """Resolving a path costs ~20 µs; the names Entra sends are few, so answers are cached
    (bounded, and keyed by the exact text: the cache cannot change an answer)."""
    if len(text) > MAX_KEPT_TEXT:
        return _resolves_to_held(holding, text)
    return _cached_holds(holding, text)


@lru_cache(maxsize=4096)
def _cached_holds(holding: Holding[Any], text: str) -> bool:
    return _resolves_to_held(holding, text)


def _resolves_to_held(holding: Holding[Any], text: str) -> bool:
    try:
        binding = holding.path_class(text).resolve()
    except SCIMException:
        return False
    if binding is None or binding.model is not holding.model:
        return False
    return (binding.field_name, binding.sub_field_name) in holding.held


@dataclass(frozen=True, slots=True)
class Holding(Generic[M]):
    """Which attributes of one resource type Modyo holds: ``held`` lists (field, sub-field)
    pairs of ``model``; ``path_class`` parses attribute paths against it."""

    resource: str
    model: type[M]
    path_class: type[Path[Any]]
    held: Collection[tuple[str, str | None]]

    def holds(self, path: object) -> bool:
        return _holds(self, str(path))

    def holds_key(self, key: str) -> bool:
        """Whether a body key or a path-less PATCH key (``name.givenName``, a URN...) is held."""
        return key.lower() in _KEPT_KEYS or _holds(self, key)

    def body(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A POST/PUT body without the attributes Modyo cannot hold."""
        kept = {}
        for key, value in payload.items():
            if self.holds_key(key):
                kept[key] = value
            elif key.lower() not in ("id", "meta") and value not in (None, [], {}):
                note_unheld(self.resource, key)
        return kept

    def operation(self, operation: PatchOperation[Any]) -> PatchOperation[Any] | None:
        """A PATCH operation restricted to held attributes, None if it touches none."""
        if operation.path is None:
            return operation  # path-less values were split per key (pathless.py); a
            # remaining one is not an object, and scim2-models refuses it
        if self.holds(operation.path):
            return operation
        note_unheld(self.resource, str(operation.path))
        return None

    def note_sub_attributes(self, model: BaseModel) -> None:
        """Note unheld sub-attributes of held ones (``name.middleName``, ``emails.display``)."""
        for name in model.model_fields_set:
            value = getattr(model, name)
            for entry in value if isinstance(value, list) else [value]:
                for sub in getattr(entry, "model_fields_set", ()):
                    if getattr(entry, sub) is not None and (name, sub) not in self.held:
                        note_unheld(self.resource, f"{name}.{sub}")


def forget_noted() -> None:
    """Forget which names were logged (tests observe the once-per-name log)."""
    with _lock:
        _seen.clear()
