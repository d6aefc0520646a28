"""What one journal line holds, every field bounded, as pydantic models: the JSON Schema the
docs publish is generated from them (docs/reference/journal.md, "Event schema").

A line is a SCIM event (``kind: "scim"``) or a record of the chain itself (``start``,
``rotated``, ``dropped``); every line carries the seal (:class:`Seal`). Bounds are constants
here, applied by the builder (``bridge.journal.record``) and checked again by the models.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_serializer, model_validator

SCHEMA_VERSION: Final = 1
MAX_ID: Final = 128
"""Request ids, resource and member ids, token names."""
MAX_TEXT: Final = 256
"""A value (before, after), a userName or displayName, an externalId."""
MAX_ATTRIBUTE: Final = 128
"""An attribute path as the request wrote it."""
MAX_DETAIL: Final = 512
"""A SCIM error's detail, a failure's reason."""
MAX_PATH: Final = 200
"""A Modyo call's path template."""
MAX_CHANGES: Final = 32
MAX_MEMBERS: Final = 100
"""Member ids recorded per direction (added, removed); the counts are always exact."""
MAX_CALLS: Final = 32
MAX_LINE_BYTES: Final = 393_216
"""No line is longer, whatever a client sends: the bounds above, each value at its limit and
every character a control character (six bytes escaped); tests/test_journal_events.py."""
MAX_INTEGER: Final = 2**53 - 1
"""Integers stay exact in every JSON reader (RFC 8785 §3.2.2.3: IEEE 754 doubles)."""

Outcome = Literal["applied", "refused", "failed", "replayed", "planned", "held"]
ValuesMode = Literal["full", "hashed", "none"]
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Id = Annotated[str, Field(max_length=MAX_ID)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Integer = Annotated[int, Field(ge=-MAX_INTEGER, le=MAX_INTEGER)]
Value = Text | bool | Integer | None
Time = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
        description="UTC, milliseconds (RFC 3339)",
    ),
]
Replica = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Resource(_Model):
    id: Id | None = None
    name: Text | None = Field(
        None, description="userName of a User, displayName of a Group (as `values` records it)"
    )
    external_id: Text | None = None


class Change(_Model):
    """One attribute the request set, added or removed. ``before`` is absent when the bridge
    had not read the object (never read for the journal alone); ``before``/``after`` are
    absent when ``values = "none"`` leaves a personal value out."""

    attribute: Annotated[str, Field(max_length=MAX_ATTRIBUTE)]
    op: Literal["add", "replace", "remove"] | None = None
    before: Value = None
    after: Value = None

    @model_serializer(mode="plain")
    def _set_fields_only(self) -> dict[str, Any]:
        """``null`` is a value (the attribute was empty); absence is "not known"."""
        out: dict[str, Any] = {"attribute": self.attribute}
        if self.op is not None:
            out["op"] = self.op
        for name in ("before", "after"):
            if name in self.model_fields_set:
                out[name] = getattr(self, name)
        return out


class Members(_Model):
    added: Annotated[list[Id], Field(max_length=MAX_MEMBERS)] = []
    removed: Annotated[list[Id], Field(max_length=MAX_MEMBERS)] = []
    added_count: Annotated[int, Field(ge=0, le=MAX_INTEGER)] = 0
    removed_count: Annotated[int, Field(ge=0, le=MAX_INTEGER)] = 0


class ModyoCall(_Model):
    method: Annotated[str, Field(max_length=16)]
    path: Annotated[str, Field(max_length=MAX_PATH, description="the path template")]
    status: Annotated[int, Field(ge=100, le=599)] | Annotated[str, Field(max_length=64)] = Field(
        description="HTTP status, or why no answer came (deadline, connect_error...)"
    )
    attempt: Annotated[int, Field(ge=1, le=1000)]
    ms: Annotated[int, Field(ge=0, le=MAX_INTEGER)]


class ScimError(_Model):
    """The SCIM error a refused request was answered with (RFC 7644 §3.12)."""

    scim_type: Annotated[str, Field(max_length=64)] | None = None
    detail: Annotated[str, Field(max_length=MAX_DETAIL)]


class Truncated(_Model):
    """What the bounds left out: entries not recorded, and values shortened."""

    changes: Annotated[int, Field(ge=0, le=MAX_INTEGER)] = 0
    members: Annotated[int, Field(ge=0, le=MAX_INTEGER)] = 0
    modyo_calls: Annotated[int, Field(ge=0, le=MAX_INTEGER)] = 0
    values: Annotated[int, Field(ge=0, le=MAX_INTEGER)] = 0


class ScimEvent(_Model):
    """One SCIM write, or one failed read: who asked, what, what it changed, what came of it
    and what it cost in Modyo calls. ``time`` is when the outcome was known."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["scim"] = "scim"
    time: Time
    request_id: Id
    client_request_id: Id | None = None
    token: Id | None = Field(None, description="the SCIM token's name (never the token)")
    operation: Annotated[str, Field(max_length=64)]
    resource_type: Annotated[str, Field(max_length=32)] | None = None
    resource: Resource | None = None
    values: ValuesMode
    changes: Annotated[list[Change], Field(max_length=MAX_CHANGES)] = []
    members: Members | None = None
    outcome: Outcome
    status: Annotated[int, Field(ge=100, le=599)] | None = None
    error: ScimError | None = Field(None, description="present when refused")
    reason: Annotated[str, Field(max_length=MAX_DETAIL)] | None = Field(
        None, description="present when failed"
    )
    modyo_calls: Annotated[list[ModyoCall], Field(max_length=MAX_CALLS)] = []
    duration_ms: Annotated[int, Field(ge=0, le=MAX_INTEGER)]
    truncated: Truncated | None = None

    @model_validator(mode="after")
    def _outcome_explained(self) -> ScimEvent:
        problem = explanation_problem(self.outcome, self.error is not None, self.reason is not None)
        if problem:
            raise ValueError(problem)
        return self

    def wire(self) -> dict[str, Any]:
        """The event as the journal writes it: absent fields left out."""
        return self.model_dump(mode="json", exclude_none=True)


def explanation_problem(outcome: str, has_error: bool, has_reason: bool) -> str | None:
    """Why an event's outcome and its explanation do not go together, if they do not."""
    if has_error != (outcome == "refused"):
        return "a refused event carries its SCIM error, and only it"
    if has_reason != (outcome == "failed"):
        return "a failed event carries its reason, and only it"
    return None


class Previous(_Model):
    """The head a new segment continues from, as read from the journal file."""

    file: Annotated[str, Field(max_length=255)] | None = None
    seq: Annotated[int, Field(ge=1, le=MAX_INTEGER)]
    mac: Hex64 | None = None


class Seal(_Model):
    """On every line: its place in the replica's chain and the keyed hash over it
    (docs/reference/journal.md, "The chain"). ``prev``, ``kid`` and ``mac`` are absent
    when the journal runs without a key; ``prev`` is absent on a chain's first line."""

    seq: Annotated[int, Field(ge=1, le=MAX_INTEGER)]
    replica: Replica
    prev: Hex64 | None = None
    kid: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None
    mac: Hex64 | None = None


class ScimLine(ScimEvent, Seal):
    pass


class StartLine(Seal):
    """A process began writing: a new segment (``previous`` absent) or the continuation of
    the file's last line; ``repaired`` when that file ended in an incomplete line."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["start"]
    time: Time
    bridge_version: Annotated[str, Field(max_length=64)]
    pid: Annotated[int, Field(ge=0, le=MAX_INTEGER)]
    values: ValuesMode
    previous: Previous | None = None
    repaired: bool = False


class RotatedLine(Seal):
    """The first line of a file after rotation, naming the file it continues."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["rotated"]
    time: Time
    previous_file: Annotated[str, Field(max_length=255)]


class DroppedLine(Seal):
    """Events that were not written (a full queue, a failed write), counted."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["dropped"]
    time: Time
    count: Annotated[int, Field(ge=1, le=MAX_INTEGER)]
    reason: Literal["queue_full", "write_error"]


Line = Annotated[ScimLine | StartLine | RotatedLine | DroppedLine, Field(discriminator="kind")]
LINE: Final = TypeAdapter(Line)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of one journal line, as docs/reference/journal.md shows it."""
    schema = LINE.json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"scim-bridge journal line, schema_version {SCHEMA_VERSION}",
        **schema,
    }
