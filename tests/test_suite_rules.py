"""The suite's own rules (docs/development.md, "Tests"): a test waits on conditions, never on
the clock, so no property may fail because one example was slow on a loaded machine."""

from __future__ import annotations

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
