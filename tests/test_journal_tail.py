"""``scim-bridge journal tail`` (files and the shared Redis stream, following) and ``journal
export --redis``: the same filters as the history, no secret in any output, and a reader
that leaves (``| head``) is not an error."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from bridge.journal import EventFilter
from bridge.journal.redis_history import RedisHistory
from bridge.journal.tail import tail_files, tail_stream, text_line
from bridge.run.cli import main
from tests.redis_servers import RedisServer
from tests.test_journal_cli import journal
from tests.waits import HANG_GUARD_SECONDS

GUARD_SECONDS = 60.0


def test_tail_shows_the_latest_matching_events_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal(tmp_path / "j", "pod-a")
    template = tmp_path / "j" / "journal.jsonl"  # the setting: every replica's files
    argv = ["journal", "tail", "--no-follow", "-n", "2", "--operation", "users.patch"]
    assert main([*argv, str(template)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert " pod-a refused 200 users.patch User " in lines[0] and lines[0].endswith(": taken")
    assert "request=pod-a-1" in lines[0] and "token=entra" in lines[0]
    assert " pod-a applied 200 users.patch " in lines[1] and "request=pod-a-4" in lines[1]


def test_a_text_line_cannot_be_forged_by_a_detail() -> None:
    line = text_line({"outcome": "refused", "error": {"detail": "x\n2026 pod applied"}})
    assert "\n" not in line and line.endswith("x?2026 pod applied")


def test_tail_follows_new_events_and_rotated_files(tmp_path: Path) -> None:
    first = journal(tmp_path / "j", "pod-a")
    seen: list[Mapping[str, Any]] = []
    stop, more, two = threading.Event(), threading.Event(), threading.Event()

    def emit(event: Mapping[str, Any]) -> None:
        seen.append(event)
        if len(seen) == 2:
            two.set()

    def wait(seconds: float) -> None:
        more.set()  # the tail has looked once: the test writes more
        stop.wait(0.01)

    follower = threading.Thread(
        target=tail_files,
        args=([tmp_path / "j" / "journal.jsonl"], EventFilter(outcomes=frozenset({"failed"})), 1,
              True, emit),
        kwargs={"stop": stop.is_set, "wait": wait},
    )  # fmt: skip
    follower.start()
    try:
        assert more.wait(GUARD_SECONDS), "the tail never looked"
        assert [event["request_id"] for event in seen] == ["pod-a-3"]
        journal(tmp_path / "j", "pod-b")  # another replica's new file
        with first[0].open("ab") as handle:  # a half-written line is not read yet
            handle.write(b'{"kind":"scim"')
        assert two.wait(GUARD_SECONDS), "the new event was never shown"
        assert [event["request_id"] for event in seen] == ["pod-a-3", "pod-b-3"]
    finally:
        stop.set()
        follower.join(GUARD_SECONDS)
    assert not follower.is_alive()


def _redis_env(monkeypatch: pytest.MonkeyPatch, server: RedisServer) -> None:
    monkeypatch.setenv("BRIDGE_IDEMPOTENCY__BACKEND", "redis")
    monkeypatch.setenv("BRIDGE_IDEMPOTENCY__REDIS_URL", server.url)
    monkeypatch.setenv("BRIDGE_IDEMPOTENCY__KEY_PREFIX", "t:")


async def _fill(server: RedisServer, count: int) -> None:
    client = aioredis.from_url(server.url)
    history = RedisHistory(client, "t:journal", 1000, HANG_GUARD_SECONDS)
    try:
        async with history.running():
            for number in range(count):
                outcome = "failed" if number % 2 else "applied"
                history.add({"time": f"2026-12-05T08:00:0{number}.000Z", "outcome": outcome,
                             "operation": "users.create", "request_id": f"r{number}",
                             "replica": "pod-a"})  # fmt: skip
            async with asyncio.timeout(GUARD_SECONDS):
                await history.drained()
    finally:
        await client.aclose()


async def test_export_and_tail_read_the_shared_stream_without_printing_its_url(
    redis_factory: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    server: RedisServer = redis_factory(password="redis-secret-0123456789")
    _redis_env(monkeypatch, server)
    await _fill(server, 5)
    code = await asyncio.to_thread(main, ["journal", "export", "--redis", "--outcome", "failed"])
    assert code == 0
    exported = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert [event["request_id"] for event in exported] == ["r1", "r3"]  # oldest first
    argv = ["journal", "tail", "--redis", "--no-follow", "-n", "2", "--format", "jsonl"]
    assert await asyncio.to_thread(main, argv) == 0
    tailed = [json.loads(line)["request_id"] for line in capfd.readouterr().out.splitlines()]
    assert tailed == ["r3", "r4"]
    server.stop()
    assert await asyncio.to_thread(main, ["journal", "export", "--redis"]) == 2
    out, err = capfd.readouterr()
    assert "did not answer" in err and "redis-secret" not in out + err


async def test_tail_follows_the_stream(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    history = RedisHistory(client, "t:journal", 1000, HANG_GUARD_SECONDS)
    seen: list[Mapping[str, Any]] = []
    two = asyncio.Event()
    stop = False
    where = EventFilter(outcomes=frozenset({"refused"}))

    def emit(event: Mapping[str, Any]) -> None:
        seen.append(event)
        if len(seen) == 2:
            two.set()

    try:
        async with history.running():
            history.add({"outcome": "refused", "request_id": "old"})
            await history.drained()
            follow = asyncio.create_task(
                tail_stream(
                    client,
                    "t:journal",
                    where,
                    0,
                    True,
                    emit,
                    call_seconds=HANG_GUARD_SECONDS,
                    stop=lambda: stop,
                )
            )
            for number in range(3):
                outcome = "refused" if number else "applied"
                history.add({"outcome": outcome, "request_id": f"n{number}"})
            async with asyncio.timeout(GUARD_SECONDS):
                await two.wait()
            stop = True
            async with asyncio.timeout(GUARD_SECONDS):
                await follow
    finally:
        await client.aclose()
    assert [event["request_id"] for event in seen] == ["n1", "n2"]


def test_export_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    paths = [path for n in range(40) for path in journal(tmp_path / "j", f"pod-{n}")]
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "journal", "export", *map(str, paths)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert json.loads(process.stdout.readline())["kind"] == "scim"
    process.stdout.close()  # what `| head -1` does
    try:
        code = process.wait(GUARD_SECONDS)
    finally:
        process.kill()
    assert code == 0
    assert b"Traceback" not in process.stderr.read()
    process.stderr.close()


def test_a_source_is_required_and_only_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["journal", "tail"]) == 2
    assert "give journal files" in capsys.readouterr().err
    assert main(["journal", "export", "--redis", str(tmp_path / "x.jsonl")]) == 2
    assert "not both" in capsys.readouterr().err
