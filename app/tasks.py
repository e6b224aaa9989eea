"""Background work is enqueued here, by the job's dotted name: code in ``app/`` never imports ``jobs/``.

One RQ queue per priority; workers listen in :data:`QUEUE_NAMES` order, so
critical never waits behind low. Each job's timeout and retry are declared
once, in :data:`JOBS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rq import Queue, Retry
from rq.worker import Worker

from app.config import QUEUE_NAMES, WEBHOOK_QUEUE
from app.models.types import utcnow
from app.redis_client import get_redis

FAILURE_TTL = 7 * 24 * 3600


@dataclass(frozen=True)
class JobSpec:
    timeout: int
    retry: Retry | None = None
    result_ttl: int = 600
    failure_ttl: int = FAILURE_TTL


# RQ re-runs a job whose worker died (StartedJobRegistry cleanup) while it has retries left.
_RETRY = Retry(max=3, interval=[1, 5, 30])
JOBS = {
    "jobs.delivery.route_notification": JobSpec(300, _RETRY),
    "jobs.delivery.route_notifications": JobSpec(600, _RETRY),
    "jobs.delivery.deliver": JobSpec(300, _RETRY),
    "jobs.campaigns.plan_campaign": JobSpec(600, _RETRY),
    "jobs.campaigns.run_batch": JobSpec(600, _RETRY),
    # Not retried: a run left mid-step is taken again by the scheduler once its lease is over (app/workflows/engine.py).
    "jobs.workflows.advance_run": JobSpec(300, None),
    # Not retried: the next viewer who finds the snapshot stale asks again once its lock (this timeout) expires.
    "jobs.dashboard.refresh_dashboard_counts": JobSpec(120, None, result_ttl=0, failure_ttl=120),
    # Not retried: what a pass leaves undone stays in the outbox, and the next nudge or the scheduler's tick runs it.
    "jobs.webhooks.dispatch": JobSpec(300, None, result_ttl=60, failure_ttl=3600),
}
DEFAULT_JOB = JobSpec(300, _RETRY)


def get_queue(name: str) -> Queue:
    if name not in QUEUE_NAMES and name != WEBHOOK_QUEUE:
        raise ValueError(f"unknown queue {name!r}; expected one of {', '.join(QUEUE_NAMES)} or {WEBHOOK_QUEUE}")
    return Queue(name, connection=get_redis())


def queue_depths() -> dict[str, dict[str, int]]:
    """Waiting jobs, scheduled jobs and listening workers per queue, for the dashboard and /metrics."""
    connection = get_redis()
    workers = Worker.all(connection=connection)
    depths = {}
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=connection)
        depths[name] = {
            "queued": queue.count,
            "scheduled": queue.scheduled_job_registry.count,
            "started": queue.started_job_registry.count,
            "failed": queue.failed_job_registry.count,
            "workers": sum(1 for worker in workers if name in worker.queue_names()),
        }
    return depths


def options(func: str, timeout_key: str = "job_timeout") -> dict:
    """RQ's keyword arguments for ``func``; ``prepare_data``/``create_job`` spell the timeout ``timeout``."""
    spec = JOBS.get(func, DEFAULT_JOB)
    return {
        "retry": spec.retry,
        timeout_key: spec.timeout,
        "failure_ttl": spec.failure_ttl,
        "result_ttl": spec.result_ttl,
    }


def enqueue(func: str, *args, priority: str = "normal", at: datetime | None = None):
    """Queue ``func`` (a dotted name) on the ``priority`` queue, now or at ``at``."""
    queue = get_queue(priority)
    if at is not None and at > utcnow():
        return queue.enqueue_at(at, func, *args, **options(func))
    # One round trip: on its own, RQ sends the queue registration and the job in two transactions.
    with queue.connection.pipeline() as pipe:
        job = queue.enqueue(func, *args, pipeline=pipe, **options(func))
        pipe.execute()
    return job


def enqueue_all(func: str, calls: list[tuple[tuple, datetime]], priority: str, chunk: int = 5000) -> None:
    """Queue ``func`` once per ``(args, run_at)``, pipelined: due calls now, later ones in the scheduled registry."""
    queue = get_queue(priority)
    now = utcnow()
    for start in range(0, len(calls), chunk):
        part = calls[start : start + chunk]
        with queue.connection.pipeline() as pipe:
            due = [Queue.prepare_data(func, args, **options(func, "timeout")) for args, run_at in part if run_at <= now]
            if due:
                queue.enqueue_many(due, pipeline=pipe)
            for args, run_at in part:
                if run_at > now:
                    queue.schedule_job(
                        queue.create_job(func, args=args, **options(func, "timeout")), run_at, pipeline=pipe
                    )
            pipe.execute()


def deliver_later(delivery_ids: list[int], priority: str, at: datetime | None = None, chunk: int = 1000) -> None:
    """Hand deliveries to the pipeline's job, in chunks."""
    for start in range(0, len(delivery_ids), chunk):
        enqueue("jobs.delivery.deliver", delivery_ids[start : start + chunk], priority=priority, at=at)
