"""How many examples a hypothesis property runs (docs/development.md, "Tests"): the count its
module chose, times ``EXAMPLES_SCALE`` (default 1). ``EXAMPLES_SCALE=20`` digs deeper into every
property; CI's lowest-versions job (.ci/minversions) runs a fifth, so that every property still
runs at the lowest versions within CI's time budget while the main job keeps the full counts."""

from __future__ import annotations

import os
from typing import Final

SCALE: Final = float(os.environ.get("EXAMPLES_SCALE", "1"))


def examples(count: int) -> int:
    """``count`` scaled by ``EXAMPLES_SCALE``, at least one."""
    return max(1, round(count * SCALE))
