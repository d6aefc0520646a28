"""``server.metrics_port``: Prometheus metrics on a listener of their own, so ``/metrics`` is
not reachable wherever Entra is (the SCIM listener answers 404 for it); a SIGTERM stops both."""

from __future__ import annotations

import signal

import httpx

from tests.test_cli import SCIM_TOKEN, _fake_modyo, _free_port, _running, _serve_env


def test_metrics_are_served_only_on_their_own_port() -> None:
    with _fake_modyo() as modyo_url:
        port, metrics_port = _free_port(), _free_port()
        env = _serve_env(modyo_url, port=port) | {"BRIDGE_SERVER__METRICS_PORT": str(metrics_port)}
        with _running(["serve"], f"http://127.0.0.1:{port}/healthz", env=env) as process:
            base = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {SCIM_TOKEN}"}
            assert httpx.get(f"{base}/scim/Users", headers=headers).status_code == 200
            assert httpx.get(f"{base}/metrics").status_code == 404
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert metrics.status_code == 200
            assert 'operation="users.query"' in metrics.text
            assert httpx.get(f"http://127.0.0.1:{metrics_port}/scim/Users").status_code == 404
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=20)
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output
