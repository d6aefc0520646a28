"""The example alert rules (deploy/prometheus/alerts.yml) load as Prometheus rule groups,
name only metrics the bridge exports, and each carries a runbook line pointing at a section
of docs/operator/health.md that exists. promtool is not installable from PyPI: this is the
structural check instead."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

import bridge.metrics  # registers every metric the bridge exports

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
HEALTH = ROOT / "docs" / "operator" / "health.md"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
DURATION = re.compile(r"^\d+[smhd]$")


def _exported() -> set[str]:
    """Every series name the bridge's registry can expose (from the metric families)."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        assert isinstance(family, Metric)
        if family.name.startswith("scim_bridge_"):
            names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    (group,) = document["groups"]
    assert group["name"] == "scim-bridge"
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def _anchors() -> set[str]:
    """The heading ids MkDocs gives docs/operator/health.md (lowercase, dashes)."""
    headings = re.findall(r"^#+ (.+)$", HEALTH.read_text(), re.MULTILINE)
    return {re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-") for heading in headings}


def test_every_alert_the_operators_need_is_there() -> None:
    alerts = {rule["alert"] for rule in _rules()}
    assert {
        "ScimBridgeModyoUnreachable",
        "ScimBridgeModyoTokenRejected",
        "ScimBridgeSharedStoreUnreachable",
        "ScimBridgeBrakeEngaged",
        "ScimBridgeErrorRatio",
    } <= alerts


def test_every_expression_names_only_metrics_the_bridge_exports() -> None:
    bridge.metrics.export_shared_store_up()  # a bridge with Redis exports it
    exported = _exported()
    assert "scim_bridge_upstream_up" in exported  # the registry was read
    for rule in _rules():
        named = set(re.findall(r"\bscim_bridge_[a-z0-9_]+", rule["expr"]))
        assert named, rule["alert"]
        assert named <= exported, (rule["alert"], named - exported)
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_every_rule_has_a_severity_a_duration_and_a_runbook_that_exists() -> None:
    anchors = _anchors()
    for rule in _rules():
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert DURATION.match(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning")
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations)
        page, _, anchor = annotations["runbook"].split(":", 1)[0].partition("#")
        assert page == "docs/operator/health.md" and anchor in anchors, (rule["alert"], anchor)
