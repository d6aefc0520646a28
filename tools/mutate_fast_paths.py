"""Break each guard of ``bridge/scim/fast_paths.py`` in turn and show which test notices.

Not run in CI (a few minutes): run it after changing the fast paths or their tests::

    .venv/bin/python tools/mutate_fast_paths.py            # every mutant
    .venv/bin/python tools/mutate_fast_paths.py M07 M31    # some of them

Each mutant removes one guard (an ``if ...: return None``), or one condition of it, or one
type check, so that the fast path answers more than it should. The mutated module is written
into a copy of the project, never into the working tree; ``tests/test_fast_paths.py`` runs
against the copy as CI runs it. A mutant is *killed* when a test fails, *equivalent* when the
guard it removes changes no answer (the line says why), and *survived* otherwise: that last
one is a hole in the tests. The exit status is 1 if any mutant survived.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path("bridge/scim/fast_paths.py")
TESTS = "tests/test_fast_paths.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    old: str
    new: str
    equivalent: str = ""
    """Why removing this guard changes no answer, if it does not (checked: it must survive)."""


MUTANTS = [
    # _operations: the PatchOp envelope
    Mutant("M01", "PatchOp: extra top-level keys allowed",
           'body.keys() != {"schemas", "Operations"}',
           'not body.keys() >= {"schemas", "Operations"}'),
    Mutant("M02", "PatchOp: schemas not checked",
           ' or body["schemas"] != [PATCH_SCHEMA]:', ":"),
    Mutant("M03", "PatchOp: empty Operations allowed",
           "if not isinstance(operations, list) or not operations:",
           "if not isinstance(operations, list):"),
    Mutant("M04", "PatchOp: Operations not checked to be a list",
           "if not isinstance(operations, list) or not operations:",
           "if not operations:",
           equivalent="a string or an object iterates into items that are not objects, "
           "which the next guard refuses"),
    Mutant("M05", "operation: not checked to be an object",
           "if not isinstance(operation, dict) or not operation.keys()",
           "if not operation.keys()"),
    Mutant("M06", "operation: extra keys allowed",
           ' or not operation.keys() <= {"op", "path", "value"}:', ":"),
    Mutant("M07", "operation: op not checked to be a string",
           "if not isinstance(op, str) or not isinstance(path, str):",
           "if not isinstance(path, str):"),
    Mutant("M08", "operation: path-less operations taken (path not checked)",
           "if not isinstance(op, str) or not isinstance(path, str):",
           "if not isinstance(op, str):"),
    # user_values: the create body
    Mutant("M09", "create: an upstream that cannot create taken",
           "if not self._creates or not body.keys()", "if not body.keys()",
           equivalent="without userName or email held the body fails a later guard; without "
           "active held, the result is the library's (active is dropped from both)"),
    Mutant("M10", "create: unknown attributes taken",
           " or not body.keys() <= self._create_keys:", ":"),
    Mutant("M11", "create: roles not checked to be empty",
           'if body.get("roles", []) != []:', "if False:"),
    Mutant("M12", "create: schemas not checked to be a list",
           "if not isinstance(schemas, list) or USER_SCHEMA not in schemas:",
           "if schemas is None or USER_SCHEMA not in schemas:"),
    Mutant("M13", "create: core User schema not required",
           " or USER_SCHEMA not in schemas:", ":"),
    Mutant("M14", "create: other schemas allowed",
           "if not set(schemas) <= {USER_SCHEMA, ENTERPRISE_SCHEMA} or meta",
           "if meta"),
    Mutant("M15", "create: meta not checked",
           ' or meta != {"resourceType": "User"}:', ":",
           equivalent="scim2-models ignores meta in a creation request, whatever it holds"),
    Mutant("M16", "create: userName not checked to be non-empty text",
           "if not _text(user_name) or not (", "if not ("),
    Mutant("M17", "create: externalId not checked to be text",
           " or not (external_id is None or _text(external_id)):", ":"),
    Mutant("M18", "create: any active string taken (all but \"false\" as true)",
           "if isinstance(active, str) and active.lower() in _BOOLEANS:\n"
           "            active = _BOOLEANS[active.lower()]",
           "if isinstance(active, str):\n"
           "            active = active.lower() != 'false'"),
    Mutant("M19", "create: active not checked to be a boolean",
           "if not isinstance(active, bool) or email is None", "if email is None"),
    Mutant("M20", "create: a missing or invalid email taken",
           " or email is None or not isinstance(name, dict):",
           " or not isinstance(name, dict):"),
    Mutant("M21", "create: name not checked to be an object",
           " or email is None or not isinstance(name, dict):", " or email is None:\n"
           "            return None\n        if not isinstance(name, dict):\n"
           "            name = {}\n        if False:"),
    Mutant("M22", "create: unknown name parts taken",
           "if not name.keys() <= self._name_keys.keys() or not all(", "if not all("),
    Mutant("M23", "create: name parts not checked to be text",
           " or not all(\n            isinstance(v, str) for v in name.values()\n        ):",
           ":"),
    Mutant("M24", "create: values of unheld fields returned",
           "return {field: value for field, value in values.items() if field in self._held}",
           "return values"),
    # _work_email
    Mutant("M25", "email: several emails taken (the first)",
           " or len(emails) != 1 or ", " or not emails or "),
    Mutant("M26", "email: entry keys not checked",
           'if not entry.keys() <= {"primary", "type", "value"} or entry',
           "if entry",
           equivalent="an extra key (display) is ignored by scim2-models as well"),
    Mutant("M27", "email: type not checked to be work",
           ' or entry.get("type", "work") != "work":', ":"),
    Mutant("M28", "email: primary not checked to be a boolean",
           'if not isinstance(entry.get("primary", True), bool) or not',
           "if not"),
    Mutant("M29", "email: address not validated",
           "return validate_email(entry[\"value\"])[1]", "return str(entry[\"value\"])"),
    # user_changes: user PATCH
    Mutant("M30", "user PATCH: unheld or unknown paths taken",
           "if field is None or op not in", "if op not in"),
    Mutant("M31", "user PATCH: remove (or any op) taken as replace",
           ' or op not in ("add", "replace"):\n                return None\n'
           "            if field is UserField.ACTIVE:",
           ":\n                return None\n            if field is UserField.ACTIVE:"),
    Mutant("M32", "user PATCH: active strings other than true/false taken",
           "                if not isinstance(value, bool):\n                    return None",
           "                pass"),
    Mutant("M33", "user PATCH: non-text values taken",
           "elif not isinstance(value, str) or (", "elif ("),
    Mutant("M34", "user PATCH: an empty userName taken",
           ' or (value == "" and field is UserField.USER_NAME):', ":"),
    Mutant("M35", "user PATCH: an empty string kept instead of clearing",
           'changes[field] = value if value != "" else None', "changes[field] = value"),
    # group_plan: group PATCH
    Mutant("M36", "group PATCH: replace members taken as a member step",
           'if lowered == "members" and op in ("add", "remove") and has_value:',
           'if lowered == "members" and has_value:'),
    Mutant("M37", "group PATCH: members without a value taken",
           'if lowered == "members" and op in ("add", "remove") and has_value:',
           'if lowered == "members" and op in ("add", "remove"):',
           equivalent="a missing value is None, which _member_ids refuses anyway"),
    Mutant("M38", "group PATCH: unreadable member lists taken",
           "                if ids is None:\n                    return None\n",
           "                ids = ids or ()\n"),
    Mutant("M39", "group PATCH: a member filter taken in add/replace",
           'elif selected is not None and op == "remove" and not has_value:',
           "elif selected is not None and not has_value:"),
    Mutant("M40", "group PATCH: a member filter with a value taken (the has_value guard)",
           'elif selected is not None and op == "remove" and not has_value:',
           'elif selected is not None and op == "remove":'),
    Mutant("M41", "group PATCH: member filter matched at the start only (sub-attributes)",
           "selected = _MEMBER_FILTER.fullmatch(path)", "selected = _MEMBER_FILTER.match(path)"),
    Mutant("M42", "group PATCH: any character in a filtered member id",
           '(r\'members\\[value eq "([A-Za-z0-9._-]+)"\\]\', re.IGNORECASE)',
           '(r\'members\\[value eq "(.*)"\\]\', re.IGNORECASE)'),
    Mutant("M43", "group PATCH: remove of displayName/externalId taken as a write",
           "                and op in (\"add\", \"replace\")\n                and isinstance",
           "                and isinstance"),
    Mutant("M44", "group PATCH: non-text displayName/externalId taken",
           "                and isinstance(value, str)\n                and value\n",
           "                and value is not None\n"),
    Mutant("M45", "group PATCH: an empty displayName/externalId taken",
           "                and isinstance(value, str)\n                and value\n",
           "                and isinstance(value, str)\n"),
    # _member_ids
    Mutant("M46", "members: a value that is not a list taken",
           "if not isinstance(value, list) or not value:\n        return None\n    ids = []",
           "if not value:\n        return None\n    value = value if isinstance(value, list) "
           "else [value]\n    ids = []",
           equivalent="scim2-models also reads a single member object as a list of one"),
    Mutant("M47", "members: an empty list taken",
           "if not isinstance(value, list) or not value:", "if not isinstance(value, list):",
           equivalent="scim2-models also plans an empty add or remove for an empty list"),
    Mutant("M48", "members: an entry that is not an object taken",
           "if not isinstance(entry, dict) or not entry.keys() <= _MEMBER_KEYS:",
           "if isinstance(entry, str):\n            entry = {'value': entry}\n"
           "        if not entry.keys() <= _MEMBER_KEYS:"),
    Mutant("M49", "members: unknown entry keys taken",
           " or not entry.keys() <= _MEMBER_KEYS:", ":"),
    Mutant("M50", "members: a value that is not text taken",
           "if not isinstance(member_id, str) or not member_id or kind",
           "if member_id is None or not member_id or kind"),
    Mutant("M51", "members: an empty value taken",
           " or not member_id or kind not in", " or kind not in"),
    Mutant("M52", "members: a type other than User taken",
           ' or kind not in (None, "User"):', ":"),
    Mutant("M53", "members: duplicates kept",
           "return tuple(dict.fromkeys(ids))", "return tuple(ids)"),
]  # fmt: skip


def _copy_project(into: Path) -> None:
    for name in ("bridge", "tests"):
        shutil.copytree(ROOT / name, into / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", into / "pyproject.toml")


def _run(mutant: Mutant, scratch: Path) -> list[str]:
    """The tests that fail with ``mutant`` applied (empty: it survived)."""
    original = (ROOT / TARGET).read_text()
    if mutant.old:
        assert original.count(mutant.old) == 1, f"{mutant.name}: not in {TARGET} exactly once"
    (scratch / TARGET).write_text(original.replace(mutant.old, mutant.new, 1))
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", TESTS, "-q", "-p", "no:cacheprovider", "--no-cov",
         "-o", "addopts=", "-W", "error", "-rf", "--tb=no"],
        cwd=scratch, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    (scratch / TARGET).write_text(original)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", result.stdout, re.MULTILINE)
    if result.returncode not in (0, 1) and not failed:
        raise RuntimeError(f"{mutant.name}: pytest could not run\n{result.stdout}")
    return [name.removeprefix(f"{TESTS}::") for name in failed]


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or m.name in names]
    survived = 0
    with tempfile.TemporaryDirectory() as scratch:
        _copy_project(Path(scratch))
        baseline = _run(Mutant("M00", "none", "", ""), Path(scratch))
        assert not baseline, f"the tests fail without any mutant: {baseline}"
        print("| mutant | guard broken | killed by (first failing test; failures) |")
        print("| --- | --- | --- |")
        for mutant in chosen:
            failed = _run(mutant, Path(scratch))
            if failed:
                verdict = f"`{failed[0]}` ({len(failed)})"
                if mutant.equivalent:
                    verdict += " (was thought equivalent)"
            elif mutant.equivalent:
                verdict = f"equivalent: {mutant.equivalent}"
            else:
                verdict = "**SURVIVED**"
                survived += 1
            print(f"| {mutant.name} | {mutant.what} | {verdict} |", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
