"""The journal's events: what a record holds, bounded whatever a client sends, written under
each ``journal.values`` mode, in canonical JSON, and documented by a schema the docs carry."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge.journal.canonical import Ordered, canonical, canonical_ordered
from bridge.journal.chain import Chain, open_line
from bridge.journal.event import (
    LINE,
    MAX_ATTRIBUTE,
    MAX_CALLS,
    MAX_CHANGES,
    MAX_LINE_BYTES,
    MAX_MEMBERS,
    MAX_TEXT,
    ScimLine,
    json_schema,
)
from bridge.journal.keys import JournalKey
from bridge.journal.privacy import Privacy, keyed_hash
from bridge.journal.record import NOT_READ, JournalRecord, timestamp
from tests.properties import examples

SECRET = "journal-key-for-tests-0123456789abcdef"
MOMENT = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
KEY = JournalKey.from_secret(SECRET)
DOCS = Path(__file__).parent.parent / "docs" / "reference" / "journal.md"
PERSONAL = {
    "userName": "zoë.ramírez@contoso.com",
    "givenName": "Zoë",
    "familyName": "Ramírez",
    "email": "zoe.personal@contoso.com",
    "display": "Zoë Ramírez",
}


def record(mode: str = "full", **identity: Any) -> JournalRecord:
    fields: dict[str, Any] = {
        "request_id": "req-1",
        "operation": "users.patch",
        "resource_type": "User",
        "token": "entra",
    }
    return JournalRecord(Privacy(mode, KEY.values), **(fields | identity))  # type: ignore[arg-type]


def sealed(event_fields: dict[str, Any]) -> bytes:
    return Chain(KEY, "pod-1").seal(event_fields).line


def user_patch(mode: str) -> JournalRecord:
    """A PATCH of a user whose object was read: every kind of personal value once."""
    entry = record(mode)
    entry.identify(id="7", name=PERSONAL["userName"], external_id="0c5d-object-id")
    entry.add_change("name.givenName", PERSONAL["givenName"], "Zoe", op="Replace")
    entry.add_change("name.familyName", NOT_READ, PERSONAL["familyName"], op="replace")
    entry.add_change('emails[type eq "work"].value', None, PERSONAL["email"], op="Add")
    entry.add_change(f'emails[value eq "{PERSONAL["email"]}"].primary', NOT_READ, True)
    entry.add_change("active", True, False, op="replace")
    entry.add_modyo_call("PATCH", "/team_members/:id", 200, 1, 12.4)
    return entry


def test_a_record_finishes_into_an_event_of_the_schema() -> None:
    clock = iter([10.0, 10.25])
    entry = JournalRecord(
        Privacy("full", None),
        request_id="req-1",
        operation="groups.patch",
        resource_type="Group",
        client_request_id="entra-42",
        token="entra",
        now=lambda: MOMENT,
        monotonic=lambda: next(clock),
    )
    entry.identify(id="g1", name="Finance Admins", external_id="ext-g1")
    entry.add_members(added=["u1", "u2"], removed=["u3"])
    entry.add_modyo_call("POST", "/groups/:id/team_members", 503, 1, 3.6)
    entry.add_modyo_call("POST", "/groups/:id/team_members", "deadline", 2, 9000)
    event = entry.finish("failed", status=503, reason="Modyo is unavailable")
    line = json.loads(sealed(event.wire()))
    assert line["time"] == "2026-01-02T03:04:05.678Z"
    assert line["duration_ms"] == 250
    assert line["resource"] == {"id": "g1", "name": "Finance Admins", "external_id": "ext-g1"}
    assert line["members"] == {
        "added": ["u1", "u2"], "removed": ["u3"], "added_count": 2, "removed_count": 1
    }  # fmt: skip
    assert [call["status"] for call in line["modyo_calls"]] == [503, "deadline"]
    assert (line["outcome"], line["reason"], line["schema_version"]) == (
        "failed", "Modyo is unavailable", 1
    )  # fmt: skip
    assert "error" not in line and "truncated" not in line
    assert isinstance(LINE.validate_python(line), ScimLine)


def test_before_is_absent_when_not_read_and_null_when_empty() -> None:
    changes = json.loads(sealed(user_patch("full").finish("applied", status=200).wire()))["changes"]
    assert changes[0] == {
        "attribute": "name.givenName", "op": "replace", "before": "Zoë", "after": "Zoe"
    }  # fmt: skip
    assert "before" not in changes[1]  # not read
    assert changes[2]["before"] is None  # read, and empty
    assert changes[4] == {"attribute": "active", "op": "replace", "before": True, "after": False}


@pytest.mark.parametrize(
    ("outcome", "fields"),
    [
        ("refused", {}),
        ("refused", {"reason": "x"}),
        ("failed", {}),
        ("failed", {"detail": "x"}),
        ("applied", {"detail": "x"}),
        ("replayed", {"reason": "x"}),
    ],
)
def test_an_outcome_carries_its_explanation_and_only_it(
    outcome: Any, fields: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        record().finish(outcome, **fields)


def test_routing_names_the_operation_after_the_record_opened() -> None:
    entry = record("none", operation="unrouted", resource_type=None)
    entry.routed("groups.patch", "Group")
    entry.identify(name="Finance Admins")  # a group's name: not personal
    event = entry.finish("applied", status=204)
    assert (event.operation, event.resource_type) == ("groups.patch", "Group")
    assert event.resource is not None and event.resource.name == "Finance Admins"


ZONES = [UTC, timezone(timedelta(hours=-3)), timezone(timedelta(hours=5, minutes=45))]


@settings(max_examples=examples(300), derandomize=True, database=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(ZONES),
    )
)  # fmt: skip
def test_the_time_is_spelled_as_isoformat_spells_it_in_utc(moment: datetime) -> None:
    """``time`` is spelled directly; Python's own ``isoformat`` is the oracle (milliseconds
    cut, not rounded; any zone converted to UTC)."""
    expected = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert timestamp(moment) == expected


def test_a_record_is_finished_once() -> None:
    entry = record()
    entry.finish("applied", status=201)
    with pytest.raises(RuntimeError):
        entry.finish("applied", status=201)


# ------------------------------------------------------------------------------------ privacy


def test_full_mode_writes_values_as_given() -> None:
    raw = sealed(user_patch("full").finish("applied", status=200).wire()).decode()
    for name in ("userName", "givenName", "familyName", "email"):
        assert PERSONAL[name] in raw


def bounded(text: str, limit: int) -> str:
    """A text as docs/reference/journal.md bounds it: valid Unicode (a lone surrogate
    replaced), at most ``limit`` characters, a cut one ending in an ellipsis."""
    text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@settings(max_examples=examples(300), derandomize=True, database=None)
@given(
    attribute=st.text(max_size=MAX_ATTRIBUTE + 3) | st.sampled_from(["a" * 129, "x\udc80"]),
    before=st.none() | st.booleans() | st.text(max_size=MAX_TEXT + 3),
    after=st.none()
    | st.booleans()
    | st.text(max_size=MAX_TEXT + 3)
    | st.sampled_from(["é" * MAX_TEXT, "\ud800 lone"]),
    op=st.none() | st.sampled_from(["Add", "replace", "REMOVE", "move", ""]),
)
def test_full_mode_writes_each_change_as_given_within_its_bounds(
    attribute: str, before: str | bool | None, after: str | bool | None, op: str | None
) -> None:
    entry = record("full")
    entry.add_change(attribute, before, after, op=op)
    (change,) = entry.finish_wire("applied", status=200)["changes"]
    shown = [bounded(v, MAX_TEXT) if isinstance(v, str) else v for v in (before, after)]
    assert change == {
        "after": shown[1], "attribute": bounded(attribute, MAX_ATTRIBUTE), "before": shown[0],
        **({"op": op.lower()} if op and op.lower() in ("add", "replace", "remove") else {}),
    }  # fmt: skip


def test_hashed_mode_writes_what_the_auditor_helper_computes() -> None:
    entry = user_patch("hashed")
    entry.add_members(added=["u1"])
    event = entry.finish(
        "refused", status=409, scim_type="uniqueness",
        detail=f"Modyo: {PERSONAL['userName'].upper()} is already taken",
    )  # fmt: skip
    line = json.loads(sealed(event.wire()))
    expected = keyed_hash(KEY.values, PERSONAL["userName"])
    assert expected.startswith("hmac-sha256:") and len(expected) == len("hmac-sha256:") + 64
    assert line["resource"]["name"] == expected
    assert line["changes"][0]["before"] == keyed_hash(KEY.values, "Zoë")
    assert line["changes"][2]["after"] == keyed_hash(KEY.values, PERSONAL["email"])
    literal = keyed_hash(KEY.values, PERSONAL["email"])
    assert line["changes"][3]["attribute"] == f'emails[value eq "{literal}"].primary'
    assert line["error"]["detail"] == f"Modyo: {expected} is already taken"
    # what is not personal is kept as is
    assert line["changes"][4]["before"] is True
    assert line["resource"]["external_id"] == "0c5d-object-id"
    assert line["changes"][2]["attribute"] == 'emails[type eq "work"].value'
    assert line["values"] == "hashed"


def test_none_mode_leaves_no_personal_value_anywhere_in_the_line() -> None:
    entry = user_patch("none")
    entry.add_change("members", NOT_READ, [{"value": "u1", "display": PERSONAL["display"]}])
    event = entry.finish(
        "refused", status=409, scim_type="uniqueness",
        detail=f"{PERSONAL['userName']} exists; {PERSONAL['familyName'].lower()} too",
    )  # fmt: skip
    raw = sealed(event.wire())
    for value in PERSONAL.values():
        for form in {value, value.lower(), value.upper()}:
            assert form.encode() not in raw, form
            assert json.dumps(form).encode() not in raw, form
    line = json.loads(raw)
    assert [change["attribute"] for change in line["changes"]] == [
        "name.givenName", "name.familyName", 'emails[type eq "work"].value',
        'emails[value eq "…"].primary', "active", "members",
    ]  # fmt: skip
    assert "before" not in line["changes"][0] and "after" not in line["changes"][0]
    assert line["changes"][2]["before"] is None  # empty before: not a person's value
    assert line["changes"][4]["after"] is False
    assert line["resource"] == {"id": "7", "external_id": "0c5d-object-id"}


def test_a_group_name_and_member_ids_are_not_personal() -> None:
    for mode in ("hashed", "none"):
        entry = record(mode, operation="groups.patch", resource_type="Group")
        entry.identify(id="g1", name="Finance Admins")
        entry.add_change("displayName", "Finance", "Finance Admins", op="replace")
        entry.add_change('members[value eq "u9"]', NOT_READ, None, op="remove")
        entry.add_members(removed=["u9"])
        line = json.loads(sealed(entry.finish("applied", status=204).wire()))
        assert line["resource"]["name"] == "Finance Admins"
        assert line["changes"][0]["after"] == "Finance Admins"
        assert line["changes"][1]["attribute"] == 'members[value eq "u9"]'
        assert line["members"]["removed"] == ["u9"]


def test_personal_is_the_default_for_an_attribute_not_known() -> None:
    privacy = Privacy("none", None)
    assert privacy.personal("User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:"
                            "employeeNumber")  # fmt: skip
    assert privacy.personal("User", 'phoneNumbers[type eq "work"].value')
    assert not privacy.personal("User", "urn:ietf:params:scim:schemas:core:2.0:User:externalId")
    assert not privacy.personal("User", "meta.lastModified")
    assert privacy.personal("Group", "members.display")


def test_hashed_values_need_a_key() -> None:
    with pytest.raises(ValueError, match="needs the journal key"):
        Privacy("hashed", None)


# ------------------------------------------------------------------------------------- bounds

HOSTILE = ["\x00" * 100_000, "😀" * 100_000, "\ud800" * 1000 + "x" * 100_000]


@pytest.mark.parametrize("value", HOSTILE, ids=["controls", "astral", "surrogates"])
@pytest.mark.parametrize("mode", ["full", "hashed"])
def test_huge_inputs_make_a_bounded_line(value: str, mode: str) -> None:
    entry = JournalRecord(
        Privacy(mode, KEY.values), request_id=value, operation=value, resource_type=value,  # type: ignore[arg-type]
        client_request_id=value, token=value,
    )  # fmt: skip
    entry.identify(id=value, name=value, external_id=value)
    for _ in range(1000):
        entry.add_change(value, value, value, op="replace")
    entry.add_members(added=[value] * 5000, removed=[value] * 5000)
    for _ in range(1000):
        entry.add_modyo_call(value, value, value, 10**9, 1e30)
    event = entry.finish("failed", status=500, reason=value)
    raw = Chain(KEY, "r" * 64).seal(event.wire()).line
    assert len(raw) <= MAX_LINE_BYTES
    raw.decode("utf-8")  # valid UTF-8: no lone surrogate reached the line
    line = json.loads(raw)
    assert len(line["changes"]) == MAX_CHANGES
    assert len(line["members"]["added"]) == MAX_MEMBERS
    assert (line["members"]["added_count"], line["members"]["removed_count"]) == (5000, 5000)
    assert len(line["modyo_calls"]) == MAX_CALLS
    truncated = line["truncated"]
    assert truncated["changes"] == 1000 - MAX_CHANGES
    assert truncated["members"] == 2 * (5000 - MAX_MEMBERS)
    assert truncated["modyo_calls"] == 1000 - MAX_CALLS
    assert truncated["values"] > 0
    if mode == "full":
        assert len(line["changes"][0]["after"]) == MAX_TEXT
        assert line["changes"][0]["after"].endswith("…")
    assert isinstance(LINE.validate_python(line), ScimLine)


WORDS = st.text(max_size=300) | st.sampled_from(list(PERSONAL.values()))
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | WORDS
JSONISH = SCALARS | st.lists(SCALARS, max_size=3) | st.dictionaries(WORDS, SCALARS, max_size=3)


@settings(
    max_examples=examples(300), derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
@given(
    mode=st.sampled_from(["full", "hashed", "none"]),
    texts=st.lists(WORDS, min_size=6, max_size=6),
    changes=st.lists(st.tuples(WORDS, JSONISH, JSONISH, WORDS), max_size=5),
    members=st.lists(WORDS, max_size=5),
)
def test_any_input_makes_a_line_of_the_schema_in_canonical_form(
    mode: str, texts: list[str], changes: list[Any], members: list[str]
) -> None:
    def filled() -> JournalRecord:
        entry = JournalRecord(
            Privacy(mode, KEY.values), request_id=texts[0], operation=texts[1],  # type: ignore[arg-type]
            resource_type=texts[2], client_request_id=texts[3], token=texts[4],
            now=lambda: MOMENT, monotonic=lambda: 0.0,
        )  # fmt: skip
        entry.identify(id=texts[5], name=texts[0], external_id=texts[1])
        for attribute, before, after, op in changes:
            entry.add_change(attribute, before, after, op=op)
        entry.add_members(added=members, removed=members)
        entry.add_modyo_call(texts[1], texts[2], texts[3], 2, 1.5)
        return entry

    wire = filled().finish("refused", detail=texts[5]).wire()
    flowing = filled().finish_wire("refused", detail=texts[5])  # the request flow's path
    assert isinstance(flowing, Ordered) and flowing == wire
    raw = Chain(KEY, "pod-1").seal(wire).line  # a plain dict: the reference encoder
    opened = open_line(raw[:-1])
    assert opened.problem is None and opened.fields is not None
    assert isinstance(LINE.validate_python(opened.fields | {"mac": opened.mac}), ScimLine)
    # the fast encoder writes the same bytes (the writer seals the flow's events with it)
    assert Chain(KEY, "pod-1").seal(flowing).line == raw
    seal = {"seq": 7, "replica": "pod-1", "kid": KEY.id, "prev": "0" * 64}
    assert canonical_ordered(flowing | seal) == canonical(wire | seal)


# --------------------------------------------------------------------------- canonical form


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        # RFC 8785 §3.2.4 sample (its strings and literals: the journal writes no float)
        ('{"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", '
         '"literals": [null, true, false]}',
         '{"literals":[null,true,false],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'),
        # the reference implementation's testdata: structures.json (56.0 as the integer 56)
        ('{"1": {"f": {"f": "hi","F": 5} ,"\\n": 56}, "10": { }, "": "empty", "a": { }, '
         '"111": [ { } ], "A": { }}',
         '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}'),
        # unicode.json: no normalisation
        ('{"Unnormalized Unicode":"A\\u030a"}', '{"Unnormalized Unicode":"A\u030a"}'),
    ],
)  # fmt: skip
def test_canonical_form_is_rfc_8785(written: str, expected: str) -> None:
    assert canonical(json.loads(written)) == expected.encode("utf-8")


def ordered(value: Any) -> Any:
    """``value`` with every object's members in code-point order, as Ordered promises."""
    if isinstance(value, dict):
        return {key: ordered(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [ordered(item) for item in value]
    return value


TEXTS = st.text(st.characters(codec="utf-8"), max_size=20) | st.sampled_from(
    ["\x00\x1f\x7f\u2028\u2029", '"\\/\b\f\n\r\t', "Zoë 😀 \ufeff", "\U0010ffff"]
)
LEAVES = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | TEXTS
VALUES = st.recursive(
    LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXTS, inner, max_size=4),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=examples(500), derandomize=True, database=None)
@given(top=st.dictionaries(TEXTS, VALUES, max_size=12))
def test_the_fast_encoder_writes_the_reference_bytes(top: dict[str, Any]) -> None:
    """Any JSON the journal holds (non-ASCII, every escaped character, nested lists and
    objects, integers to ±(2^53-1)), its nested objects in order and its top level in any."""
    nested = {key: ordered(value) for key, value in top.items()}
    assert canonical_ordered(nested) == canonical(top)


def test_the_fast_encoder_leaves_what_it_cannot_write_to_the_reference() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        canonical_ordered({"a": "\ud800"})


def test_the_canonical_form_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        canonical({"a": "\ud800"})
    with pytest.raises(ValueError):
        canonical({"a": float("nan")})
    with pytest.raises(ValueError, match="not JSON"):
        canonical({"a": object()})


# ------------------------------------------------------------------------------------ schema


def test_the_docs_carry_the_schema_the_code_writes() -> None:
    text = DOCS.read_text()
    blocks = re.findall(r"```json\n(.*?)\n```", text, re.DOTALL)
    schemas = [json.loads(block) for block in blocks if '"$schema"' in block]
    assert schemas == [json_schema()], "regenerate it: scim-bridge journal schema"
