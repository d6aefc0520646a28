"""What serving a request looks up besides the request: reads of the environment, files opened
and jobs handed to the thread pool, counted while a test's block runs (a client configured once
costs none per request: docs/performance.md, the `trust_env` regression)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest


class CountedEnvironment(dict[str, str]):
    """``os.environ`` while the block runs: every read counted."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.reads = 0

    def __getitem__(self, key: str) -> str:
        self.reads += 1
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.reads += 1
        return super().__contains__(key)

    def __iter__(self) -> Any:
        self.reads += 1
        return super().__iter__()

    def items(self) -> Any:
        self.reads += 1
        return super().items()

    def copy(self) -> dict[str, str]:
        self.reads += 1
        return dict(self)


@dataclass
class Lookups:
    environment: CountedEnvironment
    jobs: int = 0
    opened: list[str] = field(default_factory=list)

    def counts(self) -> tuple[int, int, list[str]]:
        """Environment reads, thread-pool jobs, files opened."""
        return self.environment.reads, self.jobs, self.opened


_counting: Lookups | None = None
_hooked = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _counting is not None and event == "open":
        _counting.opened.append(str(args[0]))


@contextmanager
def counted_lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lookups]:
    """Count, on the running event loop, what the block looks up (undone when it ends)."""
    global _counting, _hooked
    if not _hooked:  # an audit hook cannot be removed: one for the session, counting on demand
        sys.addaudithook(_audit)
        _hooked = True
    loop = asyncio.get_running_loop()
    lookups = Lookups(CountedEnvironment(dict(os.environ)))
    submit = loop.run_in_executor

    def counted_submit(*args: Any) -> Any:
        lookups.jobs += 1
        return submit(*args)

    monkeypatch.setattr(os, "environ", lookups.environment)
    monkeypatch.setattr(loop, "run_in_executor", counted_submit)
    _counting = lookups
    try:
        yield lookups
    finally:
        _counting = None
        monkeypatch.undo()
