"""The wheel: what ``pip install scim-bridge`` puts into site-packages (the image installs it)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_installs_only_the_bridge_package(tmp_path: Path) -> None:
    """``bench/`` stays out: a top-level ``bench`` in site-packages would shadow anyone's."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(ROOT)],
        check=True, timeout=120,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("scim_bridge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"bridge"}
    assert "bridge/run/cli.py" in names and "bridge/modyo/fake/__init__.py" in names
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "scim-bridge = bridge.run.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_bench_still_runs_from_the_source_tree() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
