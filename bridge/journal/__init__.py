"""The provisioning journal: what the bridge changed in Modyo, when, on whose request, and
what failed and why, as tamper-evident JSON lines (docs/reference/journal.md).

A lower layer: it imports only the base modules (settings, metrics); the request flow feeds
it ``JournalRecord``s, finished into ``ScimEvent``s and handed to :meth:`Journal.emit`.
"""

from bridge.journal.event import SCHEMA_VERSION, ScimEvent, json_schema
from bridge.journal.history import EventFilter, History, HistoryPage, MemoryHistory
from bridge.journal.journal import Journal, replica_name
from bridge.journal.record import NOT_READ, JournalRecord

__all__ = [
    "NOT_READ",
    "SCHEMA_VERSION",
    "EventFilter",
    "History",
    "HistoryPage",
    "Journal",
    "JournalRecord",
    "MemoryHistory",
    "ScimEvent",
    "json_schema",
    "replica_name",
]
