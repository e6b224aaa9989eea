"""Provider health for the console and for Prometheus, read from the Redis counters every worker updates."""

from __future__ import annotations

import time

import pybreaker
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from app.channels.circuit_store import field_key
from app.channels.guard import HEALTH_WINDOW_MINUTES
from app.redis_client import get_redis, key


def provider_health() -> list[dict]:
    """One row per provider seen sending: circuit state and the last 15 minutes' sends and failures.

    ``{"name": "smtp", "circuit": "closed", "sent_15m": 120, "failed_15m": 3, "error_rate": 0.025, "opens": 1}``
    """
    connection = get_redis()
    names = sorted(n.decode() for n in connection.smembers(key("providers")))
    minute = int(time.time() // 60)
    minutes = range(minute - HEALTH_WINDOW_MINUTES + 1, minute + 1)
    pipe = connection.pipeline(transaction=False)
    for name in names:
        pipe.mget([key("provider", name, "sent", m) for m in minutes])
        pipe.mget([key("provider", name, "failed", m) for m in minutes])
        pipe.get(field_key(name, "state"))
        pipe.get(key("provider", name, "opens"))
    answers = pipe.execute()
    rows = []
    for index, name in enumerate(names):
        sent_values, failed_values, state, opens = answers[index * 4 : index * 4 + 4]
        sent = sum(int(v) for v in sent_values if v)
        failed = sum(int(v) for v in failed_values if v)
        rows.append(
            {
                "name": name,
                "circuit": state.decode() if state else pybreaker.STATE_CLOSED,
                "sent_15m": sent,
                "failed_15m": failed,
                "error_rate": round(failed / sent, 4) if sent else 0.0,
                "opens": int(opens or 0),
            }
        )
    return rows


class ProviderHealthCollector:
    """Exposes :func:`provider_health` (shared by all workers through Redis) as Prometheus metrics."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def collect(self):
        state = GaugeMetricFamily(
            "herald_provider_circuit_state", "1 for the provider's current circuit state", labels=["provider", "state"]
        )
        sent = GaugeMetricFamily("herald_provider_sends_15m", "Sends in the last 15 minutes", labels=["provider"])
        failed = GaugeMetricFamily(
            "herald_provider_failures_15m", "Failed sends in the last 15 minutes", labels=["provider"]
        )
        opens = CounterMetricFamily(
            "herald_provider_circuit_opens", "Circuit openings, all workers", labels=["provider"]
        )
        for row in self.rows:
            for name in (pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN):
                state.add_metric([row["name"], name], 1.0 if row["circuit"] == name else 0.0)
            sent.add_metric([row["name"]], row["sent_15m"])
            failed.add_metric([row["name"]], row["failed_15m"])
            opens.add_metric([row["name"]], row["opens"])
        yield from (state, sent, failed, opens)


def metrics_text() -> bytes:
    """Prometheus exposition: this process's own metrics (e.g. herald_circuit_open_total) plus the shared health."""
    registry = CollectorRegistry()
    registry.register(ProviderHealthCollector(provider_health()))
    return generate_latest(REGISTRY) + generate_latest(registry)
