"""README is the front door (docs/development.md): what the bridge is, the two lines that set
it up, connecting Entra, the settings most people change, and where to go next. Everything
else lives in the documentation site under docs/, so README stays small."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_BYTES = 15 * 1024


def test_readme_stays_a_front_door() -> None:
    size = len(README.read_bytes())
    assert size <= MAX_BYTES, f"README.md is {size} bytes: move detail to a page under docs/"


def test_the_test_line_is_where_ci_reads_it() -> None:
    """.ci/run runs the line after the marker verbatim: the marker, a ```sh fence, ONE line, a
    closing fence (its sed takes what lies between)."""
    text = README.read_text(encoding="utf-8")
    found = re.findall(r"<!-- test-command[^\n]*-->\n```sh\n([^\n]+)\n```\n", text)
    assert len(found) == 1, "README needs exactly one test line after <!-- test-command -->"
    assert found[0].endswith(".venv/bin/pytest"), found[0]
    assert "-r requirements/test.txt" in found[0], "the test line installs from the lock"


def test_readme_links_resolve() -> None:
    """Relative links of README point at files of the repository (on a forge, README is read
    without the site)."""
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\((?!https?://|#)([^)#\s]+)", text)
    assert targets
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, missing
