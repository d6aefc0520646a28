"""The test interface over both upstreams (tests/backends.py) says what each fake does: every
route of each fake is a logical operation, and every mode difference the suites rely on is a
row of the "REST vs SCIM upstream" table (docs/design/upstreams.md)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from bridge.modyo.fake import FakeModyo
from tests import entra
from tests.backends import (
    COSTS,
    DIFFERENCES,
    ROUTES,
    Backend,
    LoggedScim,
    _scim_operations,
    cost,
)
from tests.conftest import create_group, create_user

UPSTREAMS = Path(__file__).resolve().parents[1] / "docs" / "design" / "upstreams.md"


def _table_rows() -> set[str]:
    text = UPSTREAMS.read_text(encoding="utf-8")
    section = text.split("## Two upstreams", 1)[1].split("\n## ", 1)[0]
    return {line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")}


@pytest.mark.parametrize("name", sorted(DIFFERENCES))
def test_every_difference_is_a_row_of_the_upstreams_table(name: str) -> None:
    cited = re.findall(r'upstreams.md "([^"]+)"', DIFFERENCES[name].documented)
    assert cited, f"{name}: cites no row of docs/design/upstreams.md"
    rows = _table_rows()
    for row in cited:
        assert row in rows, f"{name}: docs/design/upstreams.md has no row {row!r}"


def test_every_cost_cites_its_source() -> None:
    for name, row in COSTS.items():
        assert "§9" in row.documented, name


def test_every_route_of_each_fake_is_a_logical_operation() -> None:
    rest_routes = {name for _, _, name, _ in FakeModyo()._routes}
    assert rest_routes == set(ROUTES["rest"].values())
    for _, _, route, _ in LoggedScim()._routes:
        assert _scim_operations(route, [], None), route


@pytest.mark.upstreams("rest", "scim")
async def test_a_group_patch_counts_as_what_it_does(
    scim: httpx.AsyncClient, backend: Backend
) -> None:
    """In scim mode a rename and a member add are both ``PATCH /Groups/:id``: the log tells
    them apart by their operations, as the REST routes do."""
    group = await create_group(scim, "Counted")
    user = await create_user(scim, "counted@contoso.com")
    backend.reset_calls()
    add = entra.patch(entra.op("Add", "members", entra.members(user["id"])))
    assert (await scim.patch(f"/Groups/{group['id']}", json=add)).status_code == 204
    assert backend.writes() == {"members.add"}
    backend.reset_calls()
    rename = entra.patch(entra.op("Replace", "displayName", "Counted 2"))
    assert (await scim.patch(f"/Groups/{group['id']}", json=rename)).status_code == 204
    assert backend.writes() == {"group.update"}
    backend.reset_calls()
    assert (await scim.delete(f"/Users/{user['id']}")).status_code == 204
    assert backend.calls() == cost("delete a user in one group", backend.api)
