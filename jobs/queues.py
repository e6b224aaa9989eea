"""One RQ queue per priority; workers listen in this order so critical never waits behind low."""
from __future__ import annotations

from rq import Queue
from rq.worker import Worker

from app.config import QUEUE_NAMES
from app.redis_client import get_redis


def get_queue(name: str) -> Queue:
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}; expected one of {', '.join(QUEUE_NAMES)}")
    return Queue(name, connection=get_redis())


def queue_depths() -> dict[str, dict[str, int]]:
    """Waiting jobs, scheduled jobs and listening workers per queue, for the dashboard."""
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
