"""The canonical JSON of a journal line: what its keyed hash covers, byte for byte.

RFC 8785 (JSON Canonicalization Scheme) restricted to what the journal holds: member names
are ASCII (so code-point order is JCS's UTF-16 order), numbers are integers within ±(2^53-1)
(so Python's decimal form is JCS's), strings are valid Unicode (no lone surrogates). Then JCS
is ``json.dumps`` with sorted keys, no whitespace, non-ASCII characters written as themselves
and control characters as JCS escapes them (``\\n``, ``\\u001f``), encoded as UTF-8.
"""

from __future__ import annotations

import json
from typing import Any


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
