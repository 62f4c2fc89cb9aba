"""The shipped Prometheus alerts name metrics that exist: a renamed metric would leave an
alert silently never firing."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
# Metrics are declared where they are made: prometheus_client's classes, or the metric
# families a collector builds at scrape time.
DECLARED = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary|Info|GaugeMetricFamily|CounterMetricFamily)"
    r"\(\s*\"(trygg_[a-z0-9_]+)\"")
SUFFIXES = {"Counter": ("_total",), "CounterMetricFamily": ("_total",),
            "Histogram": ("_bucket", "_sum", "_count"), "Summary": ("_sum", "_count")}


def declared_metrics() -> set[str]:
    names: set[str] = set()
    for package in ("core", "gateway", "dispatch", "trygg", "devices"):
        for path in (ROOT / package).rglob("*.py"):
            for kind, name in DECLARED.findall(path.read_text()):
                base = name.removesuffix("_total")
                names.add(name)
                names.update(base + suffix for suffix in SUFFIXES.get(kind, ()))
    return names


def test_every_metric_an_alert_uses_is_declared() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    used = {name for group in document["groups"] for rule in group["rules"]
            for name in re.findall(r"\btrygg_[a-z0-9_]+", rule["expr"])}

    assert len(used) > 10
    assert sorted(used - declared_metrics()) == []
