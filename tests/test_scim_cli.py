"""``modyo.api = "scim"`` from the command line, over real HTTP: ``fake-modyo --api scim``
serves Modyo's SCIM server and ``serve`` works against it; ``dev --modyo-api scim`` has the
fake SCIM server inside; the setting is validated like every other."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bridge.config_loading import ConfigError, load_settings
from bridge.edge.app import create_app
from bridge.modyo.rest import RestUpstream
from bridge.modyo.scim import ScimUpstream
from bridge.modyo.upstreams import modyo_upstream
from tests.harness import make_settings
from tests.processes import FAKE_TOKEN, SCIM_TOKEN, entra_lifecycle, running, serve_env
from tests.servers import free_port


def test_serve_against_fake_modyo_scim_over_real_http() -> None:
    modyo_port, port = free_port(), free_port()
    modyo_url = f"http://127.0.0.1:{modyo_port}"
    fake = ["fake-modyo", "--api", "scim", "--port", str(modyo_port), "--token", FAKE_TOKEN]
    with running(fake, f"{modyo_url}/") as modyo:
        auth = {"Authorization": f"Bearer {FAKE_TOKEN}"}
        listed = httpx.get(f"{modyo_url}/api/admin/scim/Users", headers=auth)
        assert listed.headers["content-type"].startswith("application/scim+json")
        env = serve_env(modyo_url, port=port) | {"BRIDGE_MODYO__API": "scim"}
        with running(["serve"], f"http://127.0.0.1:{port}/healthz", env=env):
            entra_lifecycle(f"http://127.0.0.1:{port}/scim")
        calls = httpx.get(f"{modyo_url}/__fake__/calls", headers=auth).json()["calls"]
        assert calls["PATCH /scim/Users/:id"] >= 3 and "DELETE /scim/Users/:id" not in calls
        modyo.terminate()
        assert "fake Modyo SCIM API" in modyo.communicate(timeout=10)[0]


def test_dev_with_the_scim_api_serves_the_whole_lifecycle() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/scim"
    args = ["dev", "--modyo-api", "scim", "--port", str(port), "--token", SCIM_TOKEN]
    with running(args, f"http://127.0.0.1:{port}/healthz") as process:
        entra_lifecycle(base)
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "fake Modyo SCIM API in memory" in output


def test_modyo_api_picks_the_upstream_and_defaults_to_rest(tmp_path: Path) -> None:
    assert make_settings().modyo.api == "rest"
    config = tmp_path / "bridge.toml"
    config.write_text(
        '[scim.tokens]\nentra = "0123456789abcdefgh-Zq8xW2vK9mLp4sT"\n'
        '[modyo]\nbase_url = "https://acme.modyo.cloud"\ntoken = "t"\napi = "scim"\n'
    )
    assert load_settings(config).modyo.api == "scim"
    with pytest.raises(ConfigError) as refused:
        load_settings(config, modyo={"base_url": "https://a.b", "token": "t", "api": "soap"})
    assert [problem.split(":")[0] for problem in refused.value.problems] == ["modyo.api"]
    rest, scim = make_settings(), make_settings(modyo={"api": "scim"})
    assert isinstance(modyo_upstream(rest.modyo.api, rest.modyo, rest.retry), RestUpstream)
    assert isinstance(modyo_upstream(scim.modyo.api, scim.modyo, scim.retry), ScimUpstream)
    create_app(make_settings(modyo={"api": "scim"}))  # builds without a transport
