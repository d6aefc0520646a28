"""The journal key and the keys derived from it (docs/reference/journal.md, "Keys").

One secret, configured as ``journal.key`` or ``journal.key_file``; each use gets its own key,
HKDF-Expand (RFC 5869 §2.3) of the secret with a label, so a value's hash can never double as
a line's seal: the chain key seals lines, the values key hashes personal values, and the key
id (public) names which secret sealed a line, so ``verify`` can tell a wrong key from an edit.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bridge.config import journal_key_problem

CHAIN_LABEL: Final = b"scim-bridge journal chain v1"
VALUES_LABEL: Final = b"scim-bridge journal values v1"
KEY_ID_LABEL: Final = b"scim-bridge journal key id v1"


def expand(secret: bytes, label: bytes) -> bytes:
    """HKDF-Expand(PRK=secret, info=label, L=32): one block, HMAC-SHA-256(secret, label|0x01)."""
    return hmac.new(secret, label + b"\x01", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class JournalKey:
    chain: bytes = field(repr=False)
    values: bytes = field(repr=False)
    id: str
    """16 hex digits naming the secret (not secret: it is on every sealed line)."""

    @classmethod
    def from_secret(cls, secret: str) -> JournalKey:
        raw = secret.encode("utf-8")
        return cls(
            chain=expand(raw, CHAIN_LABEL),
            values=expand(raw, VALUES_LABEL),
            id=expand(raw, KEY_ID_LABEL)[:8].hex(),
        )

    @classmethod
    def from_file(cls, path: Path) -> JournalKey:
        """The key in ``path`` (its final line break ignored), as ``journal.key_file`` reads
        it. Raises ValueError naming the file, never the key."""
        try:
            secret = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ValueError(f"{path}: cannot read the key ({reason})") from None
        problem = journal_key_problem(secret)
        if problem:
            raise ValueError(f"{path}: the key {problem}")
        return cls.from_secret(secret)
