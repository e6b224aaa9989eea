"""Queue depths for the dashboard; queues themselves are :func:`app.tasks.get_queue`."""
from __future__ import annotations

from rq import Queue
from rq.worker import Worker

from app.config import QUEUE_NAMES
from app.redis_client import get_redis
from app.tasks import get_queue

__all__ = ["get_queue", "queue_depths"]


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
