"""The repository stands alone: no file refers to material outside it (docs/development.md,
"This site"). A fact taken from elsewhere is written down here, in our own words, with its
public source (Microsoft Learn, Modyo's documentation, an RFC section), never as a pointer to
a file the reader does not have, nor to a tracker's history.

Found, in every tracked (or new, unignored) text file but the lock and its exports:

- a path outside the repository (``../shared``, an absolute path under ``/work``);
- a Markdown file that exists nowhere in the repository (``modyo-admin-api.md``), unless the
  line also gives its public URL (a source table naming the file behind a public page);
- a tag of a source the repository does not define (``[ENTRA R12]``, ``[SEED L58]``);
- a tracker reference (an issue number, ``issue 12 item 4``).

The documentation (README, ``docs/``, ``mkdocs.yml``, ``config.example.toml``) must be
clean. The code's docstrings still cite such material until they are reshaped: that half is
a strict xfail, which fails as soon as it passes, to be removed then.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()
SKIPPED = ("uv.lock", "requirements/")
DOCUMENTATION = ("README.md", "docs/", "mkdocs.yml", "config.example.toml")

URL = re.compile(r"https?://\S+")
OUTSIDE_PATH = re.compile(r"(?:\.\./)+shared\b|(?<![\w.])/work/[\w./-]+")
MARKDOWN_FILE = re.compile(r"[\w./-]*[\w-]\.md\b")
FOREIGN_TAG = re.compile(r"\[(?:ENTRA|SEED)\b[^\]]*\]")
TRACKER = re.compile(r"\bissues?\s+#?\d+\b(?:\s+items?\s+\d+)?", re.IGNORECASE)


def _files() -> list[Path]:
    git = shutil.which("git")
    if git is None:
        pytest.fail("git is needed to list the repository's files", pytrace=False)
    listed = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    found = []
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if name.startswith(SKIPPED) or not path.is_file() or path.resolve() == THIS:
            continue
        found.append(path)
    return found


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _problems(line: str, markdown_names: set[str]) -> list[str]:
    """What in one line refers outside the repository."""
    bare = URL.sub("", line)
    problems = [*OUTSIDE_PATH.findall(bare), *FOREIGN_TAG.findall(bare)]
    problems += [match.group(0) for match in TRACKER.finditer(bare)]
    if not URL.search(line):  # a file named beside its public URL is a public source
        problems += [
            name for name in MARKDOWN_FILE.findall(bare) if Path(name).name not in markdown_names
        ]
    return problems


def _findings(paths: list[Path], markdown_names: set[str]) -> Iterator[str]:
    for path in paths:
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for problem in _problems(line, markdown_names):
                where = path.relative_to(ROOT)
                yield f"{where}:{number}: {problem!r}: {line.strip()[:120]}"


def _split() -> tuple[list[Path], list[Path], set[str]]:
    files = _files()
    markdown_names = {path.name for path in files if path.suffix == ".md"}
    documentation = [
        path for path in files if str(path.relative_to(ROOT)).startswith(DOCUMENTATION)
    ]
    code = [path for path in files if path not in documentation]
    return documentation, code, markdown_names


def test_the_documentation_refers_to_nothing_outside_the_repository() -> None:
    documentation, _, markdown_names = _split()
    assert any(path.name == "README.md" for path in documentation)
    assert len(documentation) > 10, "the documentation files were not found"
    found = list(_findings(documentation, markdown_names))
    assert not found, "references outside the repository:\n" + "\n".join(found)


@pytest.mark.xfail(
    strict=True,
    reason="docstrings and comments of bridge/, tests/ and bench/ still cite files outside the "
    "repository and tracker history; they are rewritten when the package is reshaped",
)
def test_the_code_refers_to_nothing_outside_the_repository() -> None:
    _, code, markdown_names = _split()
    found = list(_findings(code, markdown_names))
    assert not found, "references outside the repository:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ("see reference/modyo-admin-api.md §6", True),
        ("(/work/shared/reference/modyo-admin-api.md §3.1)", True),
        ("../shared/notes", True),
        ("Several replicas (issue 12 item 4): two", True),
        ("documented [SEED L58] and [ENTRA R12]", True),
        ("[Modyo's page](https://docs.modyo.com/x.html): `docs/en/platform/core/api.md`", False),
        ("see [the contract](modyo-contract.md) and README.md", False),
        ("httpx's pool slows down (encode/httpx#3215)", False),
    ],
)
def test_what_counts_as_outside(line: str, found: bool) -> None:
    """The detector itself, on lines that do and do not refer outside."""
    assert bool(_problems(line, {"modyo-contract.md", "README.md"})) is found
