"""What a benchmark phase expects of the world it measures, checked before it measures.

A phase that finds the world other than it needs (more users than a scan may read, a fresh
user pool used up, a server answering errors) stops the run with :class:`PhaseError`: which
phase, what it expected, what it saw. ``python -m bench`` prints that one line and exits 1,
never a traceback, and never a figure measured on the wrong world.
"""

from __future__ import annotations


class PhaseError(Exception):
    """A phase's precondition or outcome is not what the phase needs."""

    def __init__(self, phase: str, expected: str, saw: str) -> None:
        super().__init__(f"phase {phase}: expected {expected}; saw {saw}")
        self.phase, self.expected, self.saw = phase, expected, saw


def expect(phase: str, holds: bool, expected: str, saw: str) -> None:
    """Raise :class:`PhaseError` unless ``holds``."""
    if not holds:
        raise PhaseError(phase, expected, saw)
