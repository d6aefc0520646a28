"""The deployment files (deploy/, compose.yaml): what two replicas behind a load balancer need.

`.ci/deploy-check` validates them against the Kubernetes and Compose schemas; these tests hold
what a schema cannot see: that the pieces agree with each other and with the bridge (ports,
paths, labels, Secret keys, the request deadline, the idempotency settings).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel

from bridge.config import ScimSettings, Settings, token_problem
from bridge.config_loading import load_settings

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "compose.yaml"
NGINX_CONF = ROOT / "deploy" / "compose" / "nginx.conf"
CONFIG_PATH = "/etc/scim-bridge/bridge.toml"
BRIDGE = {"app.kubernetes.io/name": "scim-bridge", "app.kubernetes.io/component": "bridge"}
REDIS = {"app.kubernetes.io/name": "scim-bridge", "app.kubernetes.io/component": "redis"}
# A volatile cache: no snapshots, no append-only file, bounded, evicting only expiring keys.
REDIS_CACHE_FLAGS = {
    "--save": "",
    "--appendonly": "no",
    "--maxmemory": "64mb",
    "--maxmemory-policy": "volatile-lru",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)


def _kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text()))


def _resources() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for name in _kustomization()["resources"]:
        documents.extend(d for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d)
    return documents


def _resource(kind: str, name: str) -> dict[str, Any]:
    found = [r for r in _resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _container(deployment: str) -> dict[str, Any]:
    containers = _resource("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _pod_spec(deployment: str) -> dict[str, Any]:
    return dict(_resource("Deployment", deployment)["spec"]["template"]["spec"])


def _option(args: list[str], flag: str) -> str:
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


def _container_port(container: dict[str, Any], name: str) -> int:
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    return int(ports[name])


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container["env"]}


def _quantity(text: str | int) -> float:
    """A Kubernetes quantity (the suffixes these manifests use) as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    assert match, f"unreadable quantity {text!r}"
    return float(match[1]) * units.get(match[2], 1)


def _configmap_toml() -> dict[str, Any]:
    configmap = _resource("ConfigMap", "scim-bridge-config")
    return tomllib.loads(configmap["data"]["bridge.toml"])


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _compose_bridges() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    return {name: s for name, s in services.items() if s.get("command", [None])[0] == "serve"}


def _assert_valid_settings(data: dict[str, Any]) -> Settings:
    """Every key known and, with the secrets added, accepted by bridge.config."""
    known: dict[str, set[str]] = {}
    for section, field in Settings.model_fields.items():
        assert isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        known[section] = set(field.annotation.model_fields)
    checked: dict[str, dict[str, Any]] = {}
    for section, values in data.items():
        assert section in known, f"unknown section [{section}]"
        for key in values:
            assert key in known[section], f"{section}.{key}"
        checked[section] = dict(values)
    checked.setdefault("scim", {})["tokens"] = {"entra": "a-real-scim-token-0123456789-abcdef"}
    checked.setdefault("modyo", {})["token"] = "a-real-modyo-token"
    return load_settings(None, **checked)


# Kubernetes


def test_kustomization_lists_every_manifest() -> None:
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(_kustomization()["resources"]) == on_disk


def test_two_bridge_replicas_and_a_rollout_keeps_both() -> None:
    spec = _resource("Deployment", "scim-bridge")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["selector"]["matchLabels"] == BRIDGE
    assert spec["template"]["metadata"]["labels"] == BRIDGE


def test_bridge_runs_serve_with_the_mounted_config() -> None:
    container = _container("scim-bridge")
    args = container["args"]
    assert args[0] == "serve"
    config = _option(args, "--config")
    assert config == CONFIG_PATH
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    volume = next(v for v in _pod_spec("scim-bridge")["volumes"] if v["name"] == "config")
    item = volume["configMap"]["items"][0]
    assert f"{mount['mountPath']}/{item['path']}" == config
    assert volume["configMap"]["name"] == "scim-bridge-config"
    assert item["key"] in _resource("ConfigMap", "scim-bridge-config")["data"]
    assert int(_option(args, "--port")) == _container_port(container, "http")
    assert _option(args, "--host") == "0.0.0.0"


def test_probes_liveness_on_healthz_and_readiness_on_readyz() -> None:
    container = _container("scim-bridge")
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe")}
    probes["readinessProbe"] = container["readinessProbe"]["httpGet"]
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["livenessProbe"]["path"] == "/healthz"  # never restarted for a Modyo outage
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["port"] == "http"
    # Out of rotation only after several misses, never on one slow answer.
    assert container["readinessProbe"]["failureThreshold"] >= 2


def _effective_security(deployment: str) -> dict[str, Any]:
    return {
        **_pod_spec(deployment).get("securityContext", {}),
        **_container(deployment).get("securityContext", {}),
    }


@pytest.mark.parametrize("deployment", ["scim-bridge", "scim-bridge-redis"])
def test_containers_are_non_root_with_a_read_only_root(deployment: str) -> None:
    security = _effective_security(deployment)
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert _pod_spec(deployment)["automountServiceAccountToken"] is False


def test_bridge_runs_as_the_image_user_with_a_writable_tmp() -> None:
    image_user = re.search(r"^USER\s+(\d+)\s*$", (ROOT / "Dockerfile").read_text(), re.M)
    assert image_user, "the Dockerfile names no numeric USER"
    assert _effective_security("scim-bridge")["runAsUser"] == int(image_user[1]) == 10001
    mount = next(m for m in _container("scim-bridge")["volumeMounts"] if m["name"] == "tmp")
    volume = next(v for v in _pod_spec("scim-bridge")["volumes"] if v["name"] == "tmp")
    assert mount["mountPath"] == "/tmp"  # noqa: S108 (an emptyDir, not a shared /tmp)
    assert "emptyDir" in volume


def test_grace_period_outlasts_the_request_deadline() -> None:
    scim = _configmap_toml().get("scim", {})
    deadline = scim.get(
        "request_deadline_seconds", ScimSettings.model_fields["request_deadline_seconds"].default
    )
    pod = _pod_spec("scim-bridge")
    pre_stop = " ".join(_container("scim-bridge")["lifecycle"]["preStop"]["exec"]["command"])
    pause = re.search(r"sleep\((\d+(?:\.\d+)?)\)", pre_stop)
    assert pause, f"no pause in preStop: {pre_stop}"
    assert pod["terminationGracePeriodSeconds"] > float(pause[1]) + deadline


@pytest.mark.parametrize("deployment", ["scim-bridge", "scim-bridge-redis"])
def test_requests_and_limits_are_set(deployment: str) -> None:
    resources = _container(deployment)["resources"]
    for kind in ("cpu", "memory"):
        request = _quantity(resources["requests"][kind])
        limit = _quantity(resources["limits"][kind])
        assert 0 < request <= limit, f"{deployment} {kind}"


def test_bridge_memory_covers_the_benchmark_peak() -> None:
    """docs/performance.md: peak RSS 89.5 MB over the whole benchmark run."""
    resources = _container("scim-bridge")["resources"]
    assert _quantity(resources["requests"]["memory"]) > 89.5e6
    assert _quantity(resources["limits"]["memory"]) >= 2 * 89.5e6


def test_disruption_budget_keeps_one_replica() -> None:
    pdb = _resource("PodDisruptionBudget", "scim-bridge")["spec"]
    assert pdb["minAvailable"] == 1
    assert pdb["selector"]["matchLabels"] == BRIDGE


def test_replicas_spread_across_nodes_and_preferably_zones() -> None:
    constraints = {
        c["topologyKey"]: c for c in _pod_spec("scim-bridge")["topologySpreadConstraints"]
    }
    node = constraints["kubernetes.io/hostname"]
    zone = constraints["topology.kubernetes.io/zone"]
    assert node["whenUnsatisfiable"] == "DoNotSchedule"
    assert zone["whenUnsatisfiable"] == "ScheduleAnyway"
    for constraint in (node, zone):
        assert constraint["maxSkew"] == 1
        assert constraint["labelSelector"]["matchLabels"] == BRIDGE


def test_service_serves_scim_on_80_and_metrics_only_on_their_own_service() -> None:
    container = _container("scim-bridge")
    service = _resource("Service", "scim-bridge")["spec"]
    assert service["selector"] == BRIDGE
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(80, "http")]
    assert _container_port(container, "http") == 8000
    metrics = _resource("Service", "scim-bridge-metrics")["spec"]
    assert metrics["selector"] == BRIDGE
    assert [p["targetPort"] for p in metrics["ports"]] == ["metrics"]
    metrics_port = _container_port(container, "metrics")
    assert _env(container)["BRIDGE_INTERNAL__PORT"]["value"] == str(metrics_port)
    assert _env(container)["BRIDGE_INTERNAL__HOST"]["value"] == "0.0.0.0"  # for the scraper
    template = _resource("Deployment", "scim-bridge")["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
    assert metrics_port != _container_port(container, "http")


def test_secret_holds_placeholders_the_bridge_refuses() -> None:
    secret = _resource("Secret", "scim-bridge-secrets")
    assert "data" not in secret  # nothing hidden in base64
    values = secret["stringData"]
    assert all("CHANGE-ME" in value for value in values.values())
    tokens = json.loads(values["scim-tokens"])
    assert isinstance(tokens, dict) and tokens
    for token in tokens.values():  # start fails until replaced
        assert token_problem(token) is not None


@pytest.mark.parametrize("deployment", ["scim-bridge", "scim-bridge-redis"])
def test_every_secret_reference_exists(deployment: str) -> None:
    keys = set(_resource("Secret", "scim-bridge-secrets")["stringData"])
    references = [
        variable["valueFrom"]["secretKeyRef"]
        for variable in _container(deployment)["env"]
        if "valueFrom" in variable
    ]
    assert references
    for reference in references:
        assert reference["name"] == "scim-bridge-secrets"
        assert reference["key"] in keys


def test_bridge_secrets_come_from_the_secret() -> None:
    env = _env(_container("scim-bridge"))
    assert env["BRIDGE_SCIM__TOKENS"]["valueFrom"]["secretKeyRef"]["key"] == "scim-tokens"
    assert env["BRIDGE_MODYO__TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "modyo-token"
    toml = _configmap_toml()
    assert "tokens" not in toml.get("scim", {})
    assert "token" not in toml.get("modyo", {})
    assert "redis_url" not in toml["idempotency"]  # it carries the password


def test_configmap_toml_shares_idempotency_through_redis() -> None:
    idempotency = _configmap_toml()["idempotency"]
    assert idempotency["backend"] == "redis"
    assert idempotency["ttl_seconds"] > 0
    assert idempotency.get("enabled", True) is True


def test_configmap_toml_is_accepted_by_the_bridge() -> None:
    toml = _configmap_toml()
    # the Deployment's BRIDGE_IDEMPOTENCY__REDIS_URL, with the password its Secret supplies
    url = _env(_container("scim-bridge"))["BRIDGE_IDEMPOTENCY__REDIS_URL"]["value"]
    toml["idempotency"]["redis_url"] = url.replace("$(REDIS_PASSWORD)", "a-redis-password")
    settings = _assert_valid_settings(toml)
    assert settings.server.workers == 1 and settings.idempotency.backend == "redis"
    assert settings.idempotency.ttl_seconds == _configmap_toml()["idempotency"]["ttl_seconds"]


def test_redis_is_a_bounded_volatile_cache_the_bridge_points_at() -> None:
    redis = _container("scim-bridge-redis")
    args = redis["args"]
    for flag, value in REDIS_CACHE_FLAGS.items():
        assert _option(args, flag) == value
    assert _option(args, "--requirepass") == "$(REDIS_PASSWORD)"
    service = _resource("Service", "scim-bridge-redis")
    assert service["spec"]["selector"] == REDIS
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "redis" and _container_port(redis, "redis") == 6379
    url = urlsplit(_env(_container("scim-bridge"))["BRIDGE_IDEMPOTENCY__REDIS_URL"]["value"])
    assert url.scheme == "redis"
    assert (url.hostname, url.port) == (service["metadata"]["name"], port["port"])
    assert url.password == "$(REDIS_PASSWORD)"


def test_network_policies_let_only_the_bridge_reach_redis() -> None:
    redis = _resource("NetworkPolicy", "scim-bridge-redis")["spec"]
    assert redis["podSelector"]["matchLabels"] == REDIS
    (rule,) = redis["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": BRIDGE}}]
    assert redis["egress"] == [] and "Egress" in redis["policyTypes"]
    bridge = _resource("NetworkPolicy", "scim-bridge")["spec"]
    assert bridge["podSelector"]["matchLabels"] == BRIDGE
    egress_ports = {p["port"] for rule in bridge["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 6379, 443, 3128}  # DNS, Redis, Modyo, the egress proxy


def test_only_the_scraper_reaches_the_internal_listener() -> None:
    """Whatever reaches the SCIM port (the Ingress controller) does not reach /metrics: the
    rule admitting the internal listener's port names its sources, and no rule admits it
    from anywhere."""
    bridge = _resource("NetworkPolicy", "scim-bridge")["spec"]
    rules = {p["port"]: rule for rule in bridge["ingress"] for p in rule["ports"]}
    assert set(rules) == {"http", "metrics"}
    assert "from" not in rules["http"]  # the Ingress controller, wherever it runs
    (source,) = rules["metrics"]["from"]
    assert source["namespaceSelector"]["matchLabels"] and source["podSelector"]["matchLabels"]
    assert [p["port"] for p in rules["metrics"]["ports"]] == ["metrics"]
    service = _resource("Service", "scim-bridge")["spec"]
    assert "metrics" not in [p["targetPort"] for p in service["ports"]]


# Compose (the laptop demo)


def test_compose_runs_two_bridges_behind_the_load_balancer() -> None:
    services = _compose()["services"]
    bridges = _compose_bridges()
    assert len(bridges) == 2
    assert set(services["lb"]["depends_on"]) == set(bridges)
    for bridge in bridges.values():
        assert bridge["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "ports" not in bridge  # reached through the load balancer only
    upstreams = set(re.findall(r"^\s*server\s+([\w.-]+):(\d+)", NGINX_CONF.read_text(), re.M))
    assert upstreams == {
        (name, _option(bridge["command"], "--port")) for name, bridge in bridges.items()
    }
    assert any(port.endswith(":80") for port in services["lb"]["ports"])


def test_compose_load_balancer_reaches_the_scim_listener_only() -> None:
    """The internal listener (/metrics) is on another port, which nginx never routes to and
    no bridge publishes."""
    nginx = set(re.findall(r"^\s*server\s+[\w.-]+:(\d+)", NGINX_CONF.read_text(), re.M))
    for bridge in _compose_bridges().values():
        mounted = {v.split(":")[1]: v.split(":")[0] for v in bridge["volumes"]}
        toml = tomllib.loads((ROOT / mounted[_option(bridge["command"], "--config")]).read_text())
        internal = str(toml["internal"]["port"])
        assert internal != _option(bridge["command"], "--port") and internal not in nginx
        assert "ports" not in bridge
        _assert_valid_settings(toml)


def test_compose_bridges_use_the_image_healthcheck() -> None:
    for bridge in _compose_bridges().values():
        assert "test" not in bridge["healthcheck"]  # inherited from the Dockerfile's HEALTHCHECK
        assert bridge["read_only"] is True
    assert "HEALTHCHECK" in (ROOT / "Dockerfile").read_text()


def test_compose_bridges_share_redis_and_the_fake_modyo() -> None:
    services = _compose()["services"]
    fake = services["fake-modyo"]["command"]
    assert fake[0] == "fake-modyo"
    assert _option(services["redis"]["command"], "--maxmemory") == "64mb"
    for flag, value in REDIS_CACHE_FLAGS.items():
        assert _option(services["redis"]["command"], flag) == value
    for bridge in _compose_bridges().values():
        mounted = {v.split(":")[1]: v.split(":")[0] for v in bridge["volumes"]}
        config_file = ROOT / mounted[_option(bridge["command"], "--config")]
        toml = tomllib.loads(config_file.read_text())
        assert toml["idempotency"]["backend"] == "redis"
        assert urlsplit(toml["idempotency"]["redis_url"]).hostname == "redis"
        modyo = urlsplit(toml["modyo"]["base_url"])
        assert (modyo.hostname, str(modyo.port)) == ("fake-modyo", _option(fake, "--port"))
        assert bridge["environment"]["BRIDGE_MODYO__TOKEN"] == _option(fake, "--token")
        _assert_valid_settings(toml)
