"""``check --write`` always cleans up, whatever fails, and lists what it could not remove; a
Modyo without hard delete (405, or Rails' 404 for a route it lacks) is a warning, not a
failure. In-process against the fake Modyo, with scripted failures."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from bridge.modyo.check import run_check
from bridge.modyo.fake import (
    FakeModyo,
    FakeModyoApp,
    FakeModyoScim,
    FaultyModyo,
    Variant,
    mock_transport,
)
from bridge.modyo.fake.base import FakeResponse
from tests.harness import MODYO_TOKEN, MODYO_URL, make_settings
from tests.servers import uvicorn_serving

BROKEN = FakeResponse(422, {"errors": ["broken on purpose"]})


async def check(fake: FakeModyo, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    settings = make_settings()
    transport = mock_transport(FaultyModyo(fake), MODYO_URL)
    status = await run_check(settings.modyo, settings.retry, write=True, transport=transport)
    return status, capsys.readouterr().out


def line(out: str, check_name: str) -> str:
    return next(row for row in out.splitlines() if row.startswith(check_name))


async def test_a_failing_step_still_removes_what_was_created(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeModyo(token=MODYO_TOKEN)
    fake.script("POST /groups/:id/team_members", BROKEN)
    status, out = await check(fake, capsys)
    assert status == 1
    assert "  FAIL  " in line(out, "add group member")
    assert "  skip  " not in line(out, "delete group")  # later steps still ran
    assert fake.team_members == {} and fake.groups == {}
    assert "left behind" not in out


async def test_a_404_for_a_member_that_exists_is_a_modyo_without_hard_delete(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeModyo(token=MODYO_TOKEN)
    fake.script("DELETE /team_members/:id", FakeResponse(404, {}))  # a route it lacks
    status, out = await check(fake, capsys)
    assert status == 0
    assert "  warn  " in line(out, "hard delete team member")
    [member] = fake.team_members.values()
    assert member["username"].startswith("scim-bridge-check-leftover-")
    assert member["active"] is False


async def test_what_cannot_be_removed_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeModyo(token=MODYO_TOKEN, delete_team_members=False)
    fake.script("PUT /team_members/:id", BROKEN, BROKEN)  # the update, then the rename
    fake.script("DELETE /groups/:id", BROKEN, BROKEN)  # the probe, then the clean-up
    status, out = await check(fake, capsys)
    assert status == 1  # updates and group deletes broken: provisioning would break
    [member] = fake.team_members.values()
    [group] = fake.groups.values()
    left = [row for row in out.splitlines() if row.startswith("left behind:")]
    assert left == [
        f"left behind: group {group['id']} ({group['name']}), not deleted: "
        "Modyo refused the values: broken on purpose",
        f"left behind: team member {member['id']} ({member['username']}), not removed: "
        "Modyo refused the values: broken on purpose",
    ]


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (Variant(), "ids integer; creates 201; deletes 204; error envelope objects"),
        (
            Variant(errors="strings", create_status=200, delete_status=200, uuid_ids=True),
            "ids uuid; creates 200; deletes 200; error envelope strings",
        ),
        (Variant(errors="hash"), "ids integer; creates 201; deletes 204; error envelope hash"),
    ],
)
async def test_check_reports_the_answer_shapes_it_sees_and_passes_under_each(
    capsys: pytest.CaptureFixture[str], variant: Variant, expected: str
) -> None:
    """Every documented shape of Modyo's answers (ids, create and delete statuses, error
    envelopes) works, and ``check --write`` says which one this Modyo uses."""
    fake = FakeModyo(token=MODYO_TOKEN, variant=variant)
    fake.seed_members(1)
    status, out = await check(fake, capsys)
    assert status == 0, out
    assert expected in line(out, "answer shapes seen")
    assert "  ok    " in line(out, "duplicate team member refused as taken")
    assert len(fake.team_members) == 1  # the throw-away member is gone again


async def test_a_duplicate_not_refused_as_taken_fails_the_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Modyo whose duplicate answer the bridge cannot read as "taken" would answer Entra's
    repeated creates 400, not 409: that breaks provisioning."""
    fake = FakeModyo(token=MODYO_TOKEN)
    refused = FakeResponse(422, {"errors": ["Something else went wrong"]})
    original = fake.handle

    def answer(method: str, path: str, *args: object, **kwargs: object) -> FakeResponse:
        response = original(method, path, *args, **kwargs)  # type: ignore[arg-type]
        if method == "POST" and path.endswith("/team_members") and response.status == 409:
            return refused
        return response

    fake.handle = answer  # type: ignore[method-assign]
    status, out = await check(fake, capsys)
    assert status == 1
    assert "  FAIL  " in line(out, "duplicate team member refused as taken")


async def _check_both(
    fake: FakeModyo | FakeModyoScim, api: str, capsys: pytest.CaptureFixture[str], write: bool
) -> tuple[int, str]:
    settings = make_settings(modyo={"api": api})
    transport = mock_transport(FaultyModyo(fake), MODYO_URL)
    status = await run_check(settings.modyo, settings.retry, write=write, transport=transport)
    return status, capsys.readouterr().out


@pytest.mark.parametrize("write", [False, True])
async def test_against_modyo_s_scim_server_scim_passes_and_rest_is_not_offered(
    capsys: pytest.CaptureFixture[str], write: bool
) -> None:
    fake = FakeModyoScim(token=MODYO_TOKEN)
    status, out = await _check_both(fake, "scim", capsys, write)
    assert status == 0, out
    scim_table, rest_table = out.split("\n\n", 1)
    assert "FAIL" not in scim_table and "  ok    " in line(scim_table, "SCIM users listed")
    if write:
        assert "  ok    " in line(scim_table, "delete user as deactivation")
        assert "  ok    " in line(scim_table, "add group member")  # users list their groups
    assert "not offered by this Modyo (list team members" in rest_table


@pytest.mark.parametrize("write", [False, True])
async def test_against_the_rest_api_rest_passes_and_scim_is_not_offered(
    capsys: pytest.CaptureFixture[str], write: bool
) -> None:
    fake = FakeModyo(token=MODYO_TOKEN)
    fake.seed_members(1)
    status, out = await _check_both(fake, "rest", capsys, write)
    assert status == 0, out
    rest_table, scim_table = out.split("\n\n", 1)
    assert "FAIL" not in rest_table
    assert "not offered by this Modyo (SCIM users listed" in scim_table


async def test_a_misconfigured_api_fails_and_names_the_one_to_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out = await _check_both(FakeModyoScim(token=MODYO_TOKEN), "rest", capsys, False)
    assert status == 1
    assert "  FAIL  " in line(out, "list team members")
    assert out.rstrip().endswith('this Modyo offers the other interface: set modyo.api = "scim"')


async def test_a_probe_fails_under_python_optimize() -> None:
    """``python -O`` strips ``assert``: the probes fail explicitly, so ``scim-bridge check``
    still fails against a Modyo that ignores the userName filter."""
    fake = FakeModyo(token=MODYO_TOKEN, ignore_filters=True)
    fake.seed_members(1)  # what an ignored filter answers for any userName
    async with uvicorn_serving(FakeModyoApp(FaultyModyo(fake))) as port:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env |= {"BRIDGE_MODYO__BASE_URL": f"http://127.0.0.1:{port}",
                "BRIDGE_MODYO__TOKEN": MODYO_TOKEN}  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-O", "-m", "bridge", "check",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(60):
                out, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()  # unguarded: killed on the line above
    assert process.returncode == 1, out.decode() + err.decode()
    assert "  FAIL  " in line(out.decode(), "team member filter honoured")
    assert "the filter is ignored" in out.decode()
