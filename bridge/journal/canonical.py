"""The canonical JSON of a journal line: what its keyed hash covers, byte for byte.

RFC 8785 (JSON Canonicalization Scheme) restricted to what the journal holds: member names
are ASCII (so code-point order is JCS's UTF-16 order), numbers are integers within ±(2^53-1)
(so Python's decimal form is JCS's), strings are valid Unicode (no lone surrogates). Then JCS
is ``json.dumps`` with sorted keys, no whitespace, non-ASCII characters written as themselves
and control characters as JCS escapes them (``\\n``, ``\\u001f``), encoded as UTF-8.

:func:`canonical` is the reference (``journal verify`` checks every line against it);
:func:`canonical_ordered` writes the same bytes for an event :class:`Ordered` promises is in
order already, with pydantic-core's encoder, in a fraction of the time; :func:`with_seal` adds
the seal's members to a SCIM event so written, without writing it again (an event is encoded
once, for the recent history and its line; tests/test_journal_events.py holds these equal to
the reference for any event).
"""

from __future__ import annotations

import functools
import json
from typing import Any, Final

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
    """An event's fields as ``JournalRecord.finish_wire`` builds them: every object's members
    in code-point order already (the top level's too, which :func:`canonical_ordered` does
    not rely on), and nothing but strings (valid Unicode), integers within ±(2^53-1),
    booleans, null, lists and such objects."""


def canonical_ordered(value: dict[str, Any]) -> bytes:
    """:func:`canonical` of ``value``, whose top level may be in any order and whose nested
    objects and values keep :class:`Ordered`'s promise: the top level is sorted here, the rest
    written as it is, escaped as JCS escapes it (pydantic-core's encoder writes ``"``, ``\\``
    and control characters as ``json`` does, and every other character as itself)."""
    try:
        return to_json({key: value[key] for key in sorted(value)})
    except PydanticSerializationError:  # not as promised: the reference says why
        return canonical(value)


def event_text(event: Ordered, replica: str) -> bytes | None:
    """:func:`canonical` of a SCIM event with its ``replica`` (what ``Journal.emit_wire``
    encodes once, for the history and the line): ``event`` written as it is, its members
    in order, and the ``replica`` member put before ``request_id``, the member that follows
    it in code-point order in every event. None when ``event`` is not as Ordered promises."""
    try:
        text = to_json(event)
    except PydanticSerializationError:
        return None
    at = text.find(b',"request_id":')
    if at < 0:
        return None
    return b"".join((text[: at + 1], _replica_member(replica), text[at:]))


@functools.lru_cache(maxsize=8)
def _replica_member(replica: str) -> bytes:
    """``"replica":"<name>"``: a process has one replica name, written once."""
    return b'"replica":' + canonical(replica)


_KIND: Final = b',"kind":"scim",'
_SCHEMA_VERSION: Final = b',"schema_version":1,'


def with_seal(text: bytes, seq: int, kid: str | None, prev: str | None) -> bytes | None:
    """:func:`canonical` of a SCIM event with its seal's ``seq`` (and ``kid``, ``prev``),
    from ``text``, the :func:`canonical_ordered` form of that event with its ``replica``
    (``Journal.emit_wire``). Each member goes where code-point order puts it among the event
    schema's fields (``bridge.journal.event.ScimEvent``): ``kid`` just before ``kind``,
    ``prev`` before ``reason`` or else ``replica``, ``seq`` just after ``schema_version``.
    Each is found as the first ``,"name":`` in ``text``: a string's own quotes are escaped,
    and no object nested in an event has a member of those names before them. None when
    ``text`` is not such an event (written by the reference then)."""
    at_kind = text.find(_KIND)
    at_seq = text.find(_SCHEMA_VERSION, at_kind)
    if at_kind < 0 or at_seq < 0:
        return None
    at_seq += len(_SCHEMA_VERSION)
    parts = []
    start = 0
    if kid is not None:
        parts += [text[: at_kind + 1], b'"kid":"', kid.encode(), b'",']
        start = at_kind + 1
    if prev is not None:
        at_prev = text.find(b',"reason":', start, at_seq)
        if at_prev < 0:
            at_prev = text.find(b',"replica":', start, at_seq)
            if at_prev < 0:
                return None
        parts += [text[start : at_prev + 1], b'"prev":"', prev.encode(), b'",']
        start = at_prev + 1
    parts += [text[start:at_seq], b'"seq":%d,' % seq, text[at_seq:]]
    return b"".join(parts)
