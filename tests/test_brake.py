"""The brake's kinds beyond disables (docs/operator/first-cycle.md, "The brake"), against the
real app and the fake Modyo in both modes: member removals held whole, group deletes,
additions to a privileged group, a refused change uncounted; and ``scim-bridge brake
status | release`` (over a real redis-server, and their refusals)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from bridge.config import SafetySettings
from bridge.run.cli import main
from bridge.safety import SafetyEdge
from bridge.safety.brake import Brake, Kind
from bridge.safety.brake_store import Decision, MemoryBrakeStore
from tests import entra
from tests.backends import Backend
from tests.harness import TOKEN
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.upstreams("rest", "scim")


def removal(*ids: str) -> dict[str, object]:
    return entra.patch(
        *(entra.op("Remove", f'members[value eq "{i}"]', no_value=True) for i in ids)
    )


async def test_member_removals_past_the_threshold_are_held_whole(backend: Backend) -> None:
    settings = backend.with_settings(safety={"enabled": True, "max_member_removals": 10})
    group = backend.seed_group("Sales")
    members = backend.seed_group_members(group, 20)
    async with backend.client(settings=settings) as scim:
        first = await scim.patch(f"/Groups/{group}", json=removal(*members[:6]))
        assert first.status_code == 204, first.text
        backend.reset_calls()
        held = await scim.patch(f"/Groups/{group}", json=removal(*members[6:11]))
        assert held.status_code == 503 and "safety.max_member_removals" in held.json()["detail"]
        assert "members.remove" not in backend.calls()  # nothing of it was written
        assert len(backend.group(group).member_ids) == 14  # type: ignore[union-attr]
        fits = await scim.patch(f"/Groups/{group}", json=removal(*members[6:10]))
        assert fits.status_code == 503  # engaged: the kind is held until released
        added = entra.patch(entra.op("Add", "members", entra.members(members[0])))
        assert (await scim.patch(f"/Groups/{group}", json=added)).status_code == 204


async def test_group_deletes_and_privileged_additions(backend: Backend) -> None:
    settings = backend.with_settings(
        safety={
            "enabled": True,
            "max_group_deletes": 1,
            "privileged_groups": ["modyo admins"],
            "max_privileged_additions": 1,
        }
    )
    admins, other = backend.seed_group("Modyo Admins"), backend.seed_group("Readers")
    doomed = [backend.seed_group(f"Old {n}") for n in range(2)]
    users = backend.seed_users(3)
    async with backend.client(settings=settings) as scim:
        assert (await scim.delete(f"/Groups/{doomed[0]}")).status_code == 204
        kept = await scim.delete(f"/Groups/{doomed[1]}")
        assert kept.status_code == 503 and "safety.max_group_deletes" in kept.json()["detail"]
        assert backend.group(doomed[1]) is not None

        def adding(*ids: str) -> dict[str, object]:
            return entra.patch(entra.op("Add", "members", entra.members(*ids)))

        assert (await scim.patch(f"/Groups/{admins}", json=adding(users[0]))).status_code == 204
        second = await scim.patch(f"/Groups/{admins}", json=adding(users[1]))
        assert second.status_code == 503
        assert "privileged" in second.json()["detail"]
        assert backend.group(admins).member_ids == {users[0]}  # type: ignore[union-attr]
        readers = await scim.patch(f"/Groups/{other}", json=adding(*users))
        assert readers.status_code == 204  # not a privileged group: never held


async def test_a_change_modyo_refuses_is_not_counted(backend: Backend) -> None:
    settings = backend.with_settings(safety={"enabled": True, "max_deletes": 1})
    users = backend.seed_users(2)
    async with backend.client(settings=settings) as scim:
        backend.script("user.delete", backend.failure(404, "not found"))
        assert (await scim.delete(f"/Users/{users[0]}")).status_code == 404
        assert (await scim.delete(f"/Users/{users[1]}")).status_code == 204
        assert (await scim.delete(f"/Users/{users[0]}")).status_code == 503


@pytest.mark.upstreams("rest")
async def test_brake_status_and_release_over_the_shared_store(
    backend: Backend,
    redis_server: RedisServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shared = {"backend": "redis", "redis_url": redis_server.url}
    settings = backend.with_settings(safety={"enabled": True, "max_deletes": 1}, idempotency=shared)
    users = backend.seed_users(2)
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[scim.tokens]\nentra = "{TOKEN}"\n[modyo]\nbase_url = "http://localhost:9"\n'
        f'token = "unused-here-0123456789"\n[safety]\nmax_deletes = 1\n'
        f'[idempotency]\nbackend = "redis"\nredis_url = "{redis_server.url}"\n'
    )

    async def cli(*argv: str) -> tuple[int, list[str]]:
        capsys.readouterr()
        status = await asyncio.to_thread(main, [*argv, "--config", str(config)])
        return status, capsys.readouterr().out.splitlines()

    client = backend.client(settings=settings)
    async with client as scim:
        assert isinstance(client.app, SafetyEdge)
        assert (await scim.delete(f"/Users/{users[0]}")).status_code == 204
        assert (await scim.delete(f"/Users/{users[1]}")).status_code == 503
        status, lines = await cli("brake", "status")
        assert status == 0 and lines[1].startswith("deletes: 1 of 1 per 60 minutes; ENGAGED since")
        assert lines[0] == "disables: 0 of 50 per 60 minutes; flowing"
        assert await cli("brake", "release", "--kind", "disables") == (
            0,
            ["the brake was not engaged for disables; its window starts again"],
        )
        status, lines = await cli("brake", "release", "--kind", "deletes")
        assert status == 0 and lines[0].startswith("released: deletes (user deletes)")
        assert (await scim.delete(f"/Users/{users[1]}")).status_code == 204
        assert await client.app.rails.brake_status()  # plain data for the console


def test_brake_commands_refuse_what_they_cannot_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[scim.tokens]\nentra = "{TOKEN}"\n[modyo]\nbase_url = "http://localhost:9"\n'
        'token = "unused-here-0123456789"\n'
    )
    assert main(["brake", "status", "--config", str(config)]) == 2
    assert "release it with --pid PID" in capsys.readouterr().err
    assert main(["brake", "release", "--pid", str(os.getpid())]) == 2
    assert "is not scim-bridge" in capsys.readouterr().err
    assert main(["brake", "release", "--pid", "1", "--kind", "deletes"]) == 2
    assert "--kind needs the shared store" in capsys.readouterr().err
    assert main(["journal", "report", "--planned", "--config", str(config)]) == 2
    assert "the plan is in the serving process" in capsys.readouterr().err


class _Overtaken(MemoryBrakeStore):
    """Its first reservation is decided at once but answered only when ``answer`` is set:
    the answers of one process's concurrent reservations arrive out of order, as two
    answers from Redis can reach their coroutines."""

    def __init__(self) -> None:
        super().__init__(3600)
        self.decided = asyncio.Event()
        self.answer = asyncio.Event()
        self._first = True

    async def reserve(self, kind: str, keys: Sequence[str], limit: int) -> Decision:
        decision = await super().reserve(kind, keys, limit)
        if self._first:
            self._first = False
            self.decided.set()
            await self.answer.wait()  # unguarded: the test's timeout covers it
        return decision


@pytest.mark.upstreams("rest")
async def test_a_counted_answer_overtaken_by_a_hold_leaves_the_brake_shown() -> None:
    """A disable counted before the threshold whose answer arrives after a later disable's
    hold is not a release: ``/readyz`` keeps showing the brake. Counted after this process
    saw the hold, a change is one (released elsewhere)."""
    store = _Overtaken()
    brake = Brake(SafetySettings(max_disables=1), store)
    async with asyncio.timeout(60):
        first = asyncio.create_task(brake.reserve(Kind.DISABLES, ["user-1"]))
        await store.decided.wait()
        held = await brake.reserve(Kind.DISABLES, ["user-2"])
        assert not held.applied and brake.engaged == {Kind.DISABLES}
        store.answer.set()
        counted = await first
    assert counted.applied and counted.new and brake.engaged == {Kind.DISABLES}
    await store.release(Kind.DISABLES)  # another replica, or the CLI, released it
    after = await brake.reserve(Kind.DISABLES, ["user-3"])
    assert after.applied and brake.engaged == set()
