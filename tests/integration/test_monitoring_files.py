"""The Grafana dashboard and the Prometheus alert rules name only metrics Herald's /metrics exports.

The names come from a real scrape of /metrics (database, Redis queues and provider health collectors), so a
renamed metric fails here instead of leaving a dashboard panel empty and an alert silently never firing.
"""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.redis_client import get_redis, key
from tests.conftest import PROJECT_ROOT

DASHBOARD = PROJECT_ROOT / "docs" / "grafana" / "herald-dashboard.json"
ALERTS = PROJECT_ROOT / "docs" / "prometheus" / "herald-alerts.yml"
METRIC_NAME = re.compile(r"\b(herald_[a-z0-9_]+)")


def exported_names(client) -> set[str]:
    get_redis().sadd(key("providers"), "smtp")  # a provider that has sent, so its health series exist
    response = client.get("/metrics")
    assert response.status_code == 200
    names = set()
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.update({family.name + "_total", family.name + "_created"})
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_and_the_alerts_use_is_exported(client):
    exported = exported_names(client)
    expressions = dashboard_expressions() + alert_expressions()
    used = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert len(used) >= 10
    assert used - exported == set(), f"not exported by /metrics: {sorted(used - exported)}"


def test_the_alerts_cover_the_urgent_queue_and_open_circuits():
    expressions = " ".join(alert_expressions())
    assert 'herald_queue_jobs{queue=~"critical|high", state="queued"}' in expressions
    assert 'herald_provider_circuit_state{state="open"}' in expressions
    dashboard = json.loads(DASHBOARD.read_text())
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])
