"""``journal.values``: personal values written as given, as keyed hashes, or left out;
attribute names always kept (docs/reference/journal.md, "Privacy").

Personal is the default: an attribute is written as given only when it is known not to name
a person, per resource type (:data:`NOT_PERSONAL`, from the SCIM User and Group schemas of
RFC 7643 §4.1 and §4.2 that the bridge serves). Ids, the ``externalId`` Entra fills with an
object id, ``active``, the type of an e-mail, a group's ``displayName`` and member ids are not
personal; names, e-mails, the userName and a member's ``display`` are, and so is every
attribute not listed (an enterprise extension's ``employeeNumber``, a phone number).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Final, Literal

from bridge.journal.event import ValuesMode

HASH_PREFIX: Final = "hmac-sha256:"
CORE_SCHEMA: Final = re.compile(r"^urn:ietf:params:scim:schemas:core:2\.0:(?:user|group):")
NOT_PERSONAL: Final[Mapping[str, frozenset[str]]] = {
    "User": frozenset(
        {
            "id", "externalid", "active", "schemas", "usertype", "locale", "timezone",
            "preferredlanguage", "emails.type", "emails.primary", "groups", "groups.value",
            "groups.type", "groups.$ref",
        }
    ),
    "Group": frozenset(
        {
            "id", "externalid", "displayname", "schemas", "members", "members.value",
            "members.type", "members.$ref",
        }
    ),
}  # fmt: skip
"""Lower-cased attribute paths (``meta`` is never personal) that are written as given."""
_LITERAL: Final = re.compile(
    r'(\w+)(\s+(?:eq|ne|co|sw|ew|gt|ge|lt|le)\s+)"((?:[^"\\]|\\.)*)"', re.IGNORECASE
)
"""A comparison in a valuePath filter (RFC 7644 §3.5.2): ``emails[value eq "x"]``."""
OMITTED: Final = "…"
"""What stands for a personal literal inside an attribute path when values are left out."""


def keyed_hash(values_key: bytes, value: str | bool | int) -> str:
    """``hmac-sha256:<hex>`` of ``value`` (its UTF-8 text; a boolean or number as its JSON),
    what an auditor recomputes with ``scim-bridge journal hash`` to match a known value."""
    text = value if isinstance(value, str) else json.dumps(value)
    digest = hmac.new(values_key, text.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return HASH_PREFIX + digest.hexdigest()


def attribute_key(attribute: str) -> str:
    """The attribute's path, lower case, without its core schema URN or value filter
    (``emails[type eq "work"].value`` -> ``emails.value``)."""
    path = attribute.lower()
    if path.startswith("urn:"):
        path = CORE_SCHEMA.sub("", path)
    return re.sub(r"\[.*?\]", "", path) if "[" in path else path


class Privacy:
    """What one ``journal.values`` mode writes for a value of an attribute."""

    def __init__(self, mode: ValuesMode, values_key: bytes | None) -> None:
        if mode == "hashed" and values_key is None:
            raise ValueError('values = "hashed" needs the journal key')
        self.mode: ValuesMode = mode
        self._key = values_key

    def personal(self, resource_type: str | None, attribute: str) -> bool:
        key = attribute_key(attribute)
        if key == "meta" or key.startswith("meta."):
            return False
        kept = NOT_PERSONAL.get(resource_type or "User", frozenset())
        return key not in kept

    def value(
        self, personal: bool, value: str | bool | int | None
    ) -> tuple[Literal[True], str | bool | int | None] | tuple[Literal[False], None]:
        """(True, what is written) or (False, None) when the value, of an attribute that is
        ``personal`` or not, is left out. ``null`` is written as such: it says the attribute
        was empty, nothing about a person."""
        if value is None or self.mode == "full" or not personal:
            return True, value
        if self.mode == "none":
            return False, None
        return True, self.hashed(value)

    def hashed(self, value: str | bool | int) -> str:
        assert self._key is not None  # checked in __init__ for the hashed mode
        return keyed_hash(self._key, value)

    def path(self, resource_type: str | None, attribute: str) -> tuple[str, list[str]]:
        """The attribute path as written, each personal literal of its filter hashed or
        left out; and those literals (raw), so error texts can be cleaned of them."""
        if self.mode == "full" or '"' not in attribute:
            return attribute, []
        found: list[str] = []
        parent = attribute.split("[", 1)[0]

        def replace(match: re.Match[str]) -> str:
            if not self.personal(resource_type, f"{parent}.{match.group(1)}"):
                return match.group(0)
            literal = _unescaped(match.group(3))
            found.append(literal)
            shown = OMITTED if self.mode == "none" else self.hashed(literal)
            return f'{match.group(1)}{match.group(2)}"{shown}"'

        return _LITERAL.sub(replace, attribute), found


def _unescaped(literal: str) -> str:
    """A filter's string literal as the value it compares (RFC 7644 §3.4.2.2: JSON)."""
    try:
        value = json.loads(f'"{literal}"')
    except ValueError:
        return literal
    return value if isinstance(value, str) else literal
