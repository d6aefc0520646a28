"""``scim-bridge journal report --planned``: what a dry run would do, from the journal's events
with outcome ``planned``, or from the plan itself (the dry run's overlay: the entries
``bridge.safety.plan`` keeps, in Redis when replicas share one) (docs/operator/first-cycle.md,
"Read the report").

Users created, updated (which attributes), disabled, re-enabled and deleted; groups created,
renamed and deleted; members added and removed per group; each object named as the journal
wrote it (under ``journal.values = "hashed"`` a userName is its hash: ``scim-bridge journal
hash`` finds a known one).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from bridge.journal.export import Exported, export
from bridge.journal.history import EventFilter
from bridge.journal.privacy import attribute_key

SECTIONS: Final = (
    ("users created", "users.create"),
    ("users updated", None),
    ("users disabled", None),
    ("users re-enabled", None),
    ("users deleted", "users.delete"),
    ("groups created", "groups.create"),
    ("groups renamed", None),
    ("groups updated", None),
    ("groups deleted", "groups.delete"),
)
FALSE: Final = (False, "false")
TRUE: Final = (True, "true")


@dataclass
class _Members:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    added_count: int = 0
    removed_count: int = 0


@dataclass
class PlannedReport:
    """The planned changes, by kind, each a list of ``(object, detail)`` in journal order."""

    events: int = 0
    first: str | None = None
    last: str | None = None
    changes: dict[str, list[tuple[str, str]]] = field(
        default_factory=lambda: {name: [] for name, _ in SECTIONS}
    )
    members: dict[str, _Members] = field(default_factory=dict)

    def add(self, event: Mapping[str, Any]) -> None:
        self.events += 1
        moment = event.get("time") if isinstance(event.get("time"), str) else None
        self.first = self.first or moment
        self.last = moment or self.last
        operation = str(event.get("operation") or "")
        name = _named(event)
        for section, wanted in SECTIONS:
            if wanted == operation:
                self.changes[section].append((name, ""))
        if operation in ("users.patch", "users.replace"):
            self._user_changes(name, _list(event.get("changes")))
        if operation in ("groups.patch", "groups.replace"):
            self._group_changes(name, _list(event.get("changes")))
        members = _mapping(event.get("members"))
        if members:
            kept = self.members.setdefault(name, _Members())
            kept.added += [str(member) for member in _list(members.get("added"))]
            kept.removed += [str(member) for member in _list(members.get("removed"))]
            kept.added_count += _count(members.get("added_count"))
            kept.removed_count += _count(members.get("removed_count"))

    def _user_changes(self, name: str, changes: list[Any]) -> None:
        attributes: list[str] = []
        for change in map(_mapping, changes):
            attribute = str(change.get("attribute") or "")
            if attribute_key(attribute) != "active":
                attributes.append(attribute)
                continue
            after = change.get("after")
            after = after.lower() if isinstance(after, str) else after
            if after in FALSE:
                self.changes["users disabled"].append((name, ""))
            elif after in TRUE:
                self.changes["users re-enabled"].append((name, ""))
        if attributes:
            self.changes["users updated"].append((name, ", ".join(dict.fromkeys(attributes))))

    def _group_changes(self, name: str, changes: list[Any]) -> None:
        for change in map(_mapping, changes):
            attribute = attribute_key(str(change.get("attribute") or ""))
            if attribute == "externalid":
                self.changes["groups updated"].append((name, "externalId"))
            if attribute != "displayname":
                continue
            before = f"{change['before']} " if "before" in change else ""
            after = change.get("after")
            self.changes["groups renamed"].append((name, f"{before}-> {after}"))

    def counts(self) -> dict[str, int]:
        """How many changes of each kind (the sections, then members added and removed)."""
        found = {section: len(named) for section, named in self.changes.items()}
        found["members added"] = sum(kept.added_count for kept in self.members.values())
        found["members removed"] = sum(kept.removed_count for kept in self.members.values())
        return found

    def wire(self) -> dict[str, Any]:
        """The report as JSON (``--format json``): plain data, also for the console."""
        return {
            "events": self.events,
            "counts": self.counts(),
            "first": self.first,
            "last": self.last,
            "changes": {
                section: [{"object": name, **({"detail": d} if d else {})} for name, d in found]
                for section, found in self.changes.items()
            },
            "members": {
                group: {
                    "added": kept.added,
                    "removed": kept.removed,
                    "added_count": kept.added_count,
                    "removed_count": kept.removed_count,
                }
                for group, kept in self.members.items()
            },
        }

    def text(self) -> list[str]:
        """The report for a person: counts first, then the objects."""
        if not self.events:
            return ["no planned changes"]
        lines = [f"planned changes: {self.events} request(s), {self.first} to {self.last}"]
        for section, found in self.changes.items():
            lines.append(f"{section}: {len(found)}")
            lines += [f"  {name}" + (f": {detail}" if detail else "") for name, detail in found]
        added = sum(kept.added_count for kept in self.members.values())
        removed = sum(kept.removed_count for kept in self.members.values())
        lines.append(f"members added: {added}, removed: {removed}")
        for group, kept in self.members.items():
            lines.append(f"  {group}: +{kept.added_count} -{kept.removed_count}")
            lines += _ids("+", kept.added, kept.added_count)
            lines += _ids("-", kept.removed, kept.removed_count)
        return lines


def planned_report(paths: Sequence[Path]) -> tuple[PlannedReport, Exported]:
    """The report of the ``planned`` events in ``paths`` (each replica's files in chain
    order, replicas merged by time), and what was read (lines skipped)."""
    report = PlannedReport()

    def add(raw: bytes) -> None:
        fields = json.loads(raw)
        if isinstance(fields, dict):
            report.add(fields)

    exported = export(list(paths), EventFilter(outcomes=frozenset({"planned"})), write_jsonl=add)
    return report, exported


def plan_report(entries: Iterable[Mapping[str, Any]]) -> PlannedReport:
    """The report of a dry run's plan entries (``bridge.safety.plan``), in plan order: the
    same sections as the journal's, each object named by its userName or displayName."""
    report = PlannedReport()
    groups: dict[str, str] = {}
    for entry in entries:
        report.events += 1
        moment = entry.get("at") if isinstance(entry.get("at"), str) else None
        report.first = report.first or moment
        report.last = moment or report.last
        op = entry.get("op")
        if op == "user-create":
            user = _mapping(entry.get("user"))
            report.changes["users created"].append((_label(user.get("user_name"), user), ""))
        elif op == "user-update":
            _planned_user_update(report, _mapping(entry.get("before")), _mapping(entry.get("user")))
        elif op == "user-delete":
            report.changes["users deleted"].append((_label(entry.get("name"), entry), ""))
        elif op == "group-create":
            group = _mapping(entry.get("group"))
            groups[str(group.get("id"))] = str(group.get("display_name"))
            report.changes["groups created"].append((_label(group.get("display_name"), group), ""))
        elif op == "group-update":
            before, after = _mapping(entry.get("before")), _mapping(entry.get("group"))
            groups[str(after.get("id"))] = str(after.get("display_name"))
            name = _label(after.get("display_name"), after)
            if before.get("display_name") != after.get("display_name"):
                detail = f"{before.get('display_name')} -> {after.get('display_name')}"
                report.changes["groups renamed"].append((name, detail))
            if before.get("external_id") != after.get("external_id"):
                report.changes["groups updated"].append((name, "externalId"))
        elif op == "group-delete":
            report.changes["groups deleted"].append((_label(entry.get("name"), entry), ""))
        elif op == "members":
            group_id = str(entry.get("group"))
            label = _label(groups.get(group_id), {"id": group_id})
            kept = report.members.setdefault(label, _Members())
            added, removed = _list(entry.get("add")), _list(entry.get("remove"))
            kept.added += [str(member) for member in added]
            kept.removed += [str(member) for member in removed]
            kept.added_count += len(added)
            kept.removed_count += len(removed)
    return report


def _planned_user_update(
    report: PlannedReport, before: Mapping[str, Any], after: Mapping[str, Any]
) -> None:
    name = _label(after.get("user_name"), after)
    if before.get("active") and not after.get("active"):
        report.changes["users disabled"].append((name, ""))
    elif after.get("active") and not before.get("active"):
        report.changes["users re-enabled"].append((name, ""))
    unchanged = ("id", "active", "created", "last_modified", "group_ids")
    changed = [key for key in after if key not in unchanged and before.get(key) != after[key]]
    if changed:
        report.changes["users updated"].append((name, ", ".join(changed)))


def _label(name: object, fields: Mapping[str, Any]) -> str:
    object_id = fields.get("id")
    if name and object_id:
        return f"{name} (id {object_id})"
    return str(name or f"id {object_id}")


def report_command(
    paths: Sequence[Path],
    fmt: str,
    out: IO[str],
    err: IO[str],
    plan: Sequence[Mapping[str, Any]] | None = None,
) -> int:
    """Print the report of ``paths``, or of ``plan`` (a dry run's entries) when given;
    exit status 0 (skipped lines are named on ``err``)."""
    if plan is not None:
        report = plan_report(plan)
    else:
        report, exported = planned_report(paths)
        for where in exported.skipped:
            print(f"{where}: skipped: not a journal line", file=err)
    if fmt == "json":
        print(json.dumps(report.wire(), indent=2, ensure_ascii=False), file=out)
    else:
        print("\n".join(report.text()), file=out)
    return 0


def _named(event: Mapping[str, Any]) -> str:
    """An object as the journal names it: its name (a hash under hashed values) and id."""
    resource = _mapping(event.get("resource"))
    name, object_id = resource.get("name"), resource.get("id")
    if name and object_id:
        return f"{name} (id {object_id})"
    return str(name or (f"id {object_id}" if object_id else "(not recorded)"))


def _ids(sign: str, ids: list[str], count: int) -> list[str]:
    if not ids:
        return []
    more = f" (+{count - len(ids)} more)" if count > len(ids) else ""
    return [f"    {sign} " + " ".join(ids) + more]


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
