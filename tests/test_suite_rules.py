"""The suite's own rules (docs/development.md, "Tests"): a test waits on conditions, never on
the clock, so no property may fail because one example was slow on a loaded machine."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from hypothesis import settings

TESTS = Path(__file__).resolve().parent
TIMED = re.compile(r"\bdeadline=(?!None\b)")  # a keyword argument (an assignment has spaces)


def test_properties_run_without_a_deadline() -> None:
    """conftest.py loads a profile without Hypothesis's default 200 ms per example."""
    assert settings().deadline is None


def test_no_property_sets_a_deadline_of_its_own() -> None:
    timed = [
        f"{path.name}:{number}"
        for path in sorted(TESTS.glob("*.py"))
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if TIMED.search(line)
    ]
    assert timed == []


def _guarded_names(tree: ast.Module) -> set[str]:
    """Names (or attribute names) bound to a :class:`tests.waits.Signal`: ``x = Signal(...)``,
    ``a, b = Signal(...), Signal(...)``, ``with logged(...) as x``."""
    names: set[str] = set()

    def bind(target: ast.expr, value: ast.expr | None) -> None:
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            for one, its in zip(target.elts, value.elts, strict=False):
                bind(one, its)
        elif isinstance(value, ast.Call) and _called(value) in {"Signal", "logged"}:
            if isinstance(target, ast.Name):
                names.add(target.id)
            elif isinstance(target, ast.Attribute):
                names.add(target.attr)

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                bind(target, node.value)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if item.optional_vars is not None:
                    bind(item.optional_vars, item.context_expr)
    return names


def _called(call: ast.Call) -> str:
    function = call.func
    return function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")


def _unguarded_waits(path: Path) -> list[str]:
    text = path.read_text()
    lines, tree = text.splitlines(), ast.parse(text)
    guarded = _guarded_names(tree)
    found: list[str] = []

    def visit(node: ast.AST, covered: bool) -> None:
        if isinstance(node, ast.AsyncWith) and any(
            isinstance(item.context_expr, ast.Call) and _called(item.context_expr) == "timeout"
            for item in node.items
        ):
            covered = True
        if isinstance(node, ast.Call) and _called(node) in {"within", "wait_for"}:
            covered = True
        if (
            isinstance(node, ast.Await)
            and isinstance(node.value, ast.Call)
            and _called(node.value) == "wait"
            and not node.value.args
            and isinstance(node.value.func, ast.Attribute)
            and not covered
        ):
            owner = node.value.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name not in guarded and "# unguarded: " not in lines[node.lineno - 1]:
                found.append(f"{path.name}:{node.lineno}")
        for child in ast.iter_child_nodes(node):
            visit(child, covered)

    visit(tree, False)
    return found


def test_every_awaited_event_has_a_guard() -> None:
    """An event a test awaits is a :class:`tests.waits.Signal`, or is awaited under
    ``asyncio.timeout`` or :func:`tests.waits.within`: a broken guarantee then fails its test
    within a minute, naming what it awaited, instead of hanging its worker until
    pytest-timeout kills it (as a lost lock renewal once did in CI). A wait that only the
    test itself ends (a stop event) says so: ``# unguarded: <why it cannot hang>``."""
    unguarded = [where for path in sorted(TESTS.glob("*.py")) for where in _unguarded_waits(path)]
    assert unguarded == []


def test_the_guard_rule_finds_a_bare_wait(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "async def test_a(stop):\n"
        "    done, named = asyncio.Event(), Signal('named')\n"
        "    await done.wait()\n"  # found
        "    await named.wait()\n"
        "    await within('x', done.wait())\n"
        "    async with asyncio.timeout(1):\n"
        "        await done.wait()\n"
        "    await stop.wait()  # unguarded: the test sets it\n"
    )
    assert _unguarded_waits(sample) == ["test_sample.py:3"]
