"""``/metrics``: Prometheus text, built per scrape from the database and Redis.

Every process (web, workers) shares the same truth in PostgreSQL/SQLite and
Redis, so the numbers are read at scrape time by custom collectors on a fresh
registry instead of being counted in one process's memory. The exception is
the Redis fallback of the accept path, which exists exactly when Redis cannot
count: those figures are this process's own. Open unless
``METRICS_TOKEN`` is set; then a scraper sends it as a bearer token.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis.exceptions import RedisError
from sqlalchemy import func, select

from app.channels.health import metrics_text
from app.extensions import db
from app.leadership import LEADER_KEY_PARTS
from app.models import Delivery, Notification
from app.redis_client import get_redis, key
from app.redis_outage import outage
from app.tasks import queue_depths
from app.workflows import stats as workflow_stats

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)


class DatabaseCollector:
    """Table counts by label: a handful of GROUP BY queries per scrape, indexed columns only."""

    def collect(self):
        notifications = GaugeMetricFamily("herald_notifications", "Notifications stored, by type", labels=["type"])
        for kind, count in db.session.execute(select(Notification.type, func.count()).group_by(Notification.type)):
            notifications.add_metric([kind], count)
        deliveries = GaugeMetricFamily(
            "herald_deliveries", "Deliveries stored, by channel and status", labels=["channel", "status"]
        )
        for channel, status, count in db.session.execute(
            select(Delivery.channel, Delivery.status, func.count()).group_by(Delivery.channel, Delivery.status)
        ):
            deliveries.add_metric([channel, status], count)
        dead = db.session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.dead_lettered_at.is_not(None))
        )
        yield notifications
        yield deliveries
        yield GaugeMetricFamily("herald_dead_letters", "Deliveries on the dead-letter list", value=dead or 0)


class WorkflowCollector:
    """Workflow runs and step executions, and what the steps sent; labelled by workflow key and step index only."""

    def collect(self):
        runs = GaugeMetricFamily(
            "herald_workflow_runs", "Workflow runs, by workflow and status", labels=["workflow", "status"]
        )
        for workflow, status, count in workflow_stats.runs_by_status():
            runs.add_metric([workflow, status], count)
        steps = GaugeMetricFamily(
            "herald_workflow_step_executions",
            "Workflow step executions, by workflow, step index, state (waiting, done, skipped, stopped) and outcome",
            labels=["workflow", "step", "state", "outcome"],
        )
        for workflow, step, state, outcome, count in workflow_stats.step_executions():
            steps.add_metric([workflow, str(step), state, outcome], count)
        deliveries = GaugeMetricFamily(
            "herald_workflow_deliveries",
            "Deliveries of workflow steps' notifications, by workflow, step index and status",
            labels=["workflow", "step", "status"],
        )
        for workflow, step, status, count in workflow_stats.step_deliveries():
            deliveries.add_metric([workflow, str(step), status], count)
        yield from (runs, steps, deliveries)


class QueueCollector:
    """RQ queue depths and listening workers; ``herald_redis_up`` says 0 instead of failing the scrape."""

    def collect(self):
        up = GaugeMetricFamily("herald_redis_up", "1 when Redis answered this scrape")
        try:
            depths = queue_depths()
        except RedisError:
            log.warning("metrics: Redis did not answer", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        leading = get_redis().exists(key(*LEADER_KEY_PARTS))
        yield GaugeMetricFamily(
            "herald_scheduler_leader",
            "1 while a scheduler process holds the lease and runs periodic work, 0 when none does",
            value=1 if leading else 0,
        )
        jobs = GaugeMetricFamily("herald_queue_jobs", "RQ jobs per queue and state", labels=["queue", "state"])
        workers = GaugeMetricFamily("herald_queue_workers", "RQ workers listening on each queue", labels=["queue"])
        for name, depth in depths.items():
            for state in ("queued", "scheduled", "started", "failed"):
                jobs.add_metric([name, state], depth[state])
            workers.add_metric([name], depth["workers"])
        yield from (up, jobs, workers)


class RedisOutageCollector:
    """This web process's Redis fallback (app/redis_outage.py): counted in memory, so per process, from its start."""

    def collect(self):
        counters = outage.counters
        yield GaugeMetricFamily(
            "herald_rate_limit_fallback_active",
            "1 while this process counts API rate limits in memory because Redis is unreachable",
            value=1 if outage.active else 0,
        )
        yield CounterMetricFamily(
            "herald_rate_limit_fallback_requests",
            "API requests this process rate-limited in memory because Redis was unreachable",
            value=counters.fallback_charges,
        )
        yield CounterMetricFamily(
            "herald_accept_enqueue_deferred",
            "Notifications this process accepted without enqueueing (Redis unreachable); the reaper routes them",
            value=counters.deferred_enqueues,
        )
        yield CounterMetricFamily(
            "herald_redis_outages", "Redis outages this process has noticed", value=counters.outages
        )


def provider_metrics() -> bytes:
    """The channel layer's own exposition (circuits, error rates), when Redis answers."""
    try:
        return metrics_text()
    except RedisError:
        log.warning("metrics: provider health unavailable", exc_info=True)
        return b""


def authorised(expected: str | None, header: str) -> bool:
    if not expected:
        return True
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


@bp.get("/metrics")
def metrics():
    if not authorised(current_app.config.get("METRICS_TOKEN"), request.headers.get("Authorization", "")):
        abort(
            Response(
                "metrics need 'Authorization: Bearer <METRICS_TOKEN>'\n",
                401,
                {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": "text/plain"},
            )
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    registry.register(WorkflowCollector())
    registry.register(QueueCollector())
    registry.register(RedisOutageCollector())
    return Response(generate_latest(registry) + provider_metrics(), content_type=CONTENT_TYPE_LATEST)
