"""No plaintext to Modyo by accident: ``http://`` or ``verify_tls = false`` towards a Modyo
beyond this host is refused at start unless ``modyo.allow_insecure`` says so, and then it is
logged at warning on start, listed in ``/readyz`` and counted in a metric. A loopback Modyo
(the dev server's, the tests') needs no flag (docs/operator/listeners.md)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from bridge.config import is_loopback
from bridge.config_loading import ConfigError, load_settings
from bridge.modyo.fake import FakeModyo, FaultyModyo, mock_transport
from tests.harness import MODYO_TOKEN, TOKEN, LogOutput, bridge_client, make_settings

REFUSED_PLAINTEXT = "modyo: modyo.base_url is http://, which sends the Modyo token in plaintext"
REFUSED_UNVERIFIED = "modyo: modyo.verify_tls = false accepts any certificate"


@pytest.mark.parametrize(
    ("modyo", "refusal"),
    [
        ({"base_url": "http://acme.modyo.cloud"}, REFUSED_PLAINTEXT),
        ({"base_url": "http://10.0.0.8:8001"}, REFUSED_PLAINTEXT),
        ({"base_url": "http://modyo.localhost"}, REFUSED_PLAINTEXT),  # a resolver decides
        ({"base_url": "https://acme.modyo.cloud", "verify_tls": False}, REFUSED_UNVERIFIED),
        ({"base_url": "https://acme.modyo.cloud"}, None),
        ({"base_url": "http://127.0.0.1:8001"}, None),
        ({"base_url": "http://127.8.9.10"}, None),
        ({"base_url": "http://[::1]:8001"}, None),
        ({"base_url": "http://LOCALHOST:8001"}, None),
        ({"base_url": "https://127.0.0.1:8443", "verify_tls": False}, None),
        ({"base_url": "http://acme.modyo.cloud", "allow_insecure": True}, None),
        (
            {"base_url": "https://acme.modyo.cloud", "verify_tls": False, "allow_insecure": True},
            None,
        ),
    ],
)
def test_plaintext_beyond_this_host_needs_allow_insecure(
    modyo: dict[str, Any], refusal: str | None
) -> None:
    values = {"token": MODYO_TOKEN, **modyo}
    if refusal is None:
        load_settings(None, scim={"tokens": {"entra": TOKEN}}, modyo=values)
        return
    with pytest.raises(ConfigError) as refused:
        load_settings(None, scim={"tokens": {"entra": TOKEN}}, modyo=values)
    (problem,) = refused.value.problems
    assert problem.startswith(refusal) and "modyo.allow_insecure = true" in problem
    assert MODYO_TOKEN not in problem


def test_loopback_is_this_host_only() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.255.0.1", "::1", "[::1]", "localhost",
                                 "localhost.", "::ffff:127.0.0.1"]))  # fmt: skip
    assert not any(map(is_loopback, ["0.0.0.0", "::", "", "10.0.0.1", "modyo.localhost",
                                     "localhost.example", "::ffff:10.0.0.1"]))  # fmt: skip


def _insecure_metric() -> float | None:
    return REGISTRY.get_sample_value("scim_bridge_modyo_insecure")


async def _readyz(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get("http://bridge.test/readyz")


@pytest.mark.parametrize(
    ("modyo", "warnings"),
    [
        ({"base_url": "http://modyo.bank.example", "allow_insecure": True}, ["modyo_plaintext"]),
        (
            {"base_url": "https://modyo.bank.example", "verify_tls": False, "allow_insecure": True},
            ["modyo_unverified_tls"],
        ),
        ({"base_url": "https://modyo.bank.example", "allow_insecure": True}, []),
        ({"base_url": "http://127.0.0.1:8001"}, []),
    ],
)
async def test_allowed_insecurity_is_logged_listed_in_readyz_and_counted(
    modyo: dict[str, Any], warnings: list[str], log_output: LogOutput
) -> None:
    log_output.configure()
    settings = make_settings(modyo=modyo)
    service = FaultyModyo(FakeModyo(token=MODYO_TOKEN))
    transport = mock_transport(service, str(settings.modyo.base_url))
    bridge = bridge_client(service, settings, transport=transport)
    async with bridge as client:
        starting = await _readyz(client)
        await bridge.readiness.refresh()
        ready = await _readyz(client)
        assert _insecure_metric() == (1.0 if warnings else 0.0)
    # ready from the start: readiness waits for no Modyo probe (docs/operator/health.md)
    assert starting.status_code == 200 and ready.status_code == 200, ready.text
    assert starting.json().get("warnings", []) == ready.json().get("warnings", []) == warnings
    started = [line for line in log_output.lines() if "modyo.allow_insecure" in line["message"]]
    assert [line["level"] for line in started] == ["warning"] * bool(warnings)
    if warnings:
        assert started[0]["insecure"] == [warning.removeprefix("modyo_") for warning in warnings]
        assert "modyo.bank.example" in started[0]["message"]
