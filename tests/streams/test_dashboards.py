"""The Grafana dashboard and alert rules only query metrics the worker exports, and the rules
are valid Prometheus rules (promtool, installed by scripts/promtool.sh)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import orjson
import yaml
from prometheus_client import CollectorRegistry

from streams.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboards" / "grafana" / "dashboards" / "warden.json"
ALERTS = REPO / "dashboards" / "alerts.yml"
METRIC = re.compile(r"\b(warden_[a-z_]+|faust_[a-z_]+)\b")


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry)
    names = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in registry.collect():  # labelled families have no samples until first used
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def queried(expressions: list[str]) -> set[str]:
    return {m for e in expressions for m in METRIC.findall(e)}


def test_every_dashboard_panel_queries_an_exported_metric():
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in ("events in", "dead letters", "decisions per trigger", "active restrictions",
                   "latency", "consumer lag"):
        assert needed in titles
    missing = queried(exprs) - exported_names()
    assert not missing, f"dashboard queries metrics nobody exports: {missing}"


def test_every_alert_queries_an_exported_metric_and_the_required_alerts_exist():
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {"WardenDeadLetterSpike", "WardenConsumerLagGrowing",
            "WardenNoLiftsWhileRestrictionsActive"} <= names
    missing = queried([r["expr"] for r in rules]) - exported_names()
    assert not missing, f"alerts query metrics nobody exports: {missing}"


def test_alert_rules_pass_promtool():
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/promtool.sh installs Debian's prometheus package"
    result = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
