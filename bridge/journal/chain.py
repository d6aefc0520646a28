"""The chain: every line carries its sequence number, the previous line's keyed hash and its
own (docs/reference/journal.md, "The chain").

A line is the canonical JSON (``bridge.journal.canonical``) of its fields with the seal's
``seq``, ``replica``, ``prev`` and ``kid``, then ``"mac"`` appended as its last member:
HMAC-SHA-256, under the chain key, of the canonical bytes before it. Since ``prev`` is inside
what ``mac`` covers, a line cannot be changed, removed or moved without the key to rebuild
every line after it. Without a key (only for the stdout stream) a line has ``seq`` alone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from bridge.journal.canonical import Ordered, canonical, canonical_ordered
from bridge.journal.keys import JournalKey

_MAC_MEMBER: Final = re.compile(rb',"mac":"([0-9a-f]{64})"\}$')
HELD_BYTES: Final = 2047
"""The most bytes hashed in one step: hashlib lets go of the interpreter's lock while it
hashes 2,048 bytes or more at once (and ``hmac.digest`` always does). On the writer's thread
each release handed the lock to the busy event loop, and taking it back waited for the loop's
switch interval: two thread switches per line (docs/reference/journal.md, "Cost")."""


@dataclass(frozen=True, slots=True)
class Head:
    """The last line of a chain: what the next line links to, and what the witness logs."""

    replica: str
    seq: int
    mac: str | None
    file: str | None = None


@dataclass(slots=True)
class Sealed:
    """A line made by :meth:`Chain.seal`, one per event (not frozen: a frozen dataclass
    costs three times as much to make), never changed once made."""

    line: bytes
    seq: int
    mac: str | None


def mac_of(key: JournalKey, body: bytes) -> str:
    return _mac(hmac.new(key.chain, digestmod=hashlib.sha256), body)


def _mac(keyed: hmac.HMAC, body: bytes) -> str:
    """HMAC-SHA-256 of ``body`` with ``keyed`` (fed nothing yet), in steps of at most
    :data:`HELD_BYTES`: the thread keeps the interpreter's lock throughout."""
    view = memoryview(body)
    for start in range(0, len(view), HELD_BYTES):
        keyed.update(view[start : start + HELD_BYTES])
    return keyed.hexdigest()


class Chain:
    """Seals lines for one replica: :meth:`seal` makes the next line, :meth:`advance` moves
    the head once it is written (a line that failed to be written takes no number)."""

    def __init__(self, key: JournalKey | None, replica: str, head: Head | None = None) -> None:
        self.key = key
        self.replica = replica
        self._keyed = None if key is None else hmac.new(key.chain, digestmod=hashlib.sha256)
        self.seq = head.seq if head else 0
        self.prev = head.mac if head else None

    def seal(self, fields: Mapping[str, Any]) -> Sealed:
        """The next line: ``fields`` with the seal's members (an :class:`Ordered` event
        written by the fast encoder, anything else by the reference)."""
        body = {**fields, "seq": self.seq + 1, "replica": self.replica}
        if self.key is not None:
            body["kid"] = self.key.id
            if self.prev is not None:
                body["prev"] = self.prev
        text = canonical_ordered(body) if isinstance(fields, Ordered) else canonical(body)
        if self._keyed is None:
            return Sealed(text + b"\n", self.seq + 1, None)
        mac = _mac(self._keyed.copy(), text)
        return Sealed(text[:-1] + b',"mac":"' + mac.encode() + b'"}\n', self.seq + 1, mac)

    def advance(self, sealed: Sealed) -> None:
        self.seq, self.prev = sealed.seq, sealed.mac


@dataclass(frozen=True, slots=True)
class Opened:
    """A line taken apart: its fields (``mac`` removed), its mac, and the bytes it covers;
    or ``problem`` when the line is not a journal line in canonical form."""

    fields: dict[str, Any] | None
    mac: str | None
    body: bytes
    problem: str | None = None


def open_line(raw: bytes) -> Opened:
    """Split one line (without its line break) into fields, mac and the bytes the mac
    covers; the line must be exactly the canonical form the writer made."""
    match = _MAC_MEMBER.search(raw)
    body = raw[: match.start()] + b"}" if match else raw
    mac = match.group(1).decode() if match else None
    try:
        fields = json.loads(body)
    except ValueError:
        return Opened(None, mac, body, "not a JSON object (damaged)")
    if not isinstance(fields, dict):
        return Opened(None, mac, body, "not a JSON object (damaged)")
    try:
        exact = canonical(fields) == body
    except ValueError:
        exact = False
    if not exact:
        return Opened(fields, mac, body, "not in the canonical form the bridge writes (edited)")
    return Opened(fields, mac, body)


def authentic(opened: Opened, key: JournalKey) -> bool:
    return opened.mac is not None and hmac.compare_digest(mac_of(key, opened.body), opened.mac)
