"""The canonical JSON of a journal line: what its keyed hash covers, byte for byte.

RFC 8785 (JSON Canonicalization Scheme) restricted to what the journal holds: member names
are ASCII (so code-point order is JCS's UTF-16 order), numbers are integers within ±(2^53-1)
(so Python's decimal form is JCS's), strings are valid Unicode (no lone surrogates). Then JCS
is ``json.dumps`` with sorted keys, no whitespace, non-ASCII characters written as themselves
and control characters as JCS escapes them (``\\n``, ``\\u001f``), encoded as UTF-8.

:func:`canonical` is the reference (``journal verify`` checks every line against it);
:func:`canonical_ordered` writes the same bytes for an event :class:`Ordered` promises is in
order already, with pydantic-core's encoder, in a fraction of the time (the writer seals every
SCIM event with it; tests/test_journal_events.py holds the two equal for any event).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import PydanticSerializationError, to_json


def canonical(value: Any) -> bytes:
    """RFC 8785 form of ``value`` (within the subset above; the journal writes no float).
    Raises ValueError for a string that is not valid Unicode, NaN, or a non-JSON value."""
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string is not valid Unicode (a lone surrogate)") from None


def _refuse(value: Any) -> Any:
    raise ValueError(f"not JSON: {type(value).__name__}")


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_refuse
)
"""Built once: the writer seals every line with it (stateless, so shared by threads)."""


class Ordered(dict[str, Any]):
    """An event's fields as ``JournalRecord.finish_wire`` builds them: every object below the
    top level with its members in code-point order already, and nothing but strings (valid
    Unicode), integers within ±(2^53-1), booleans, null, lists and such objects."""


def canonical_ordered(value: dict[str, Any]) -> bytes:
    """:func:`canonical` of ``value``, whose top level may be in any order and whose nested
    objects and values keep :class:`Ordered`'s promise: the top level is sorted here, the rest
    written as it is, escaped as JCS escapes it (pydantic-core's encoder writes ``"``, ``\\``
    and control characters as ``json`` does, and every other character as itself)."""
    try:
        return to_json({key: value[key] for key in sorted(value)})
    except PydanticSerializationError:  # not as promised: the reference says why
        return canonical(value)
