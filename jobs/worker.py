"""``flask worker [--burst] [QUEUE...]``: an RQ worker that runs jobs inside the app context."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import click
from flask import current_app
from flask.cli import with_appcontext
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.worker import SimpleWorker

from app.config import QUEUE_NAMES, WEBHOOK_QUEUE
from app.extensions import db
from app.redis_client import get_redis
from app.tasks import get_queue

log = logging.getLogger(__name__)


# RQ's cold shutdown ignores a repeated SIGTERM/SIGINT that arrives within this long of the first.
IGNORED_REPEAT_SECONDS = 1.0


class HeraldWorker(SimpleWorker):
    """Runs jobs in-process (no fork per job: ~3x the throughput of RQ's forking worker).

    Each job gets a fresh database session, so one job's failure cannot leak a
    broken transaction into the next.

    A job in hand is heartbeaten every few seconds with a time-to-live of the
    dispatch lease (``HERALD_DISPATCH_LEASE_SECONDS``), not the job's timeout:
    a worker killed mid-batch stops heartbeating, so RQ's started-job registry
    sees the job abandoned once the lease is over, and the reaper's clean-up
    retries it then -- not after RQ's job timeout.

    SIGTERM (or SIGINT) is RQ's warm shutdown: the job in hand finishes, no other
    is taken. One still running ``shutdown_timeout`` seconds later is interrupted
    (RQ's cold shutdown, a second SIGTERM to itself): RQ hands it back through its
    retry, so another worker carries on within seconds, and the at most one group
    of sends it had claimed is re-driven by type once the lease is over -- as
    after a crash, but without waiting for the lease to see the job abandoned.
    """

    lease: int | None = None
    shutdown_timeout: float = 20.0
    stopping = False

    def request_stop(self, signum, frame):
        """SIGINT/SIGTERM: RQ finishes the job in hand and stops (interrupted after ``shutdown_timeout``); remembered
        so the worker is not started again."""
        first = not self.stopping
        self.stopping = True
        super().request_stop(signum, frame)  # an idle worker stops right here (RQ raises StopRequested)
        if first:
            # Started once RQ has noted the request, and never within its second: RQ ignores a second signal
            # that comes less than a second after the first (seen as a worker that never stopped under load).
            delay = max(self.shutdown_timeout, IGNORED_REPEAT_SECONDS + 0.1)
            timer = threading.Timer(delay, self._interrupt_job)
            timer.daemon = True  # a worker that finishes its job in time exits without waiting for it
            timer.start()

    def _interrupt_job(self) -> None:
        log.warning(
            "the job in hand is still running %.0f s after the stop request; interrupting it so that "
            "RQ hands it back to its queue",
            self.shutdown_timeout,
        )
        os.kill(os.getpid(), signal.SIGTERM)

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        if self.lease is None:
            self.lease = int(current_app.config["DISPATCH_LEASE_SECONDS"])
        return self.lease + 1

    def perform_job(self, job, queue, execution):
        interval = max(0.5, self.get_heartbeat_ttl(job) / 4)
        stop = threading.Event()
        beating = threading.Thread(
            target=self._beat, args=(job, execution, stop, interval), daemon=True, name="job-heartbeat"
        )
        beating.start()
        try:
            return super().perform_job(job, queue, execution)
        finally:
            stop.set()
            beating.join(5)
            db.session.remove()

    def _beat(self, job, execution, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            try:
                self.maintain_heartbeats(job, execution)
            except Exception:  # a missed beat only makes the job look abandoned sooner; the claims keep it safe
                log.warning("heartbeat of job %s failed", job.id, exc_info=True)

    def teardown(self):
        from app.channels import close_all

        close_all()
        super().teardown()


def build_worker(
    queue_names: tuple[str, ...] = QUEUE_NAMES, name: str | None = None, shutdown_timeout: float | None = None
) -> HeraldWorker:
    worker = HeraldWorker(
        [get_queue(q) for q in queue_names],
        connection=get_redis(),
        name=name,
        job_monitoring_interval=10,
        maintenance_interval=60,
    )
    if shutdown_timeout is not None:
        worker.shutdown_timeout = shutdown_timeout
    return worker


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's generated one).")
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(1, 3600),
    default=HeraldWorker.shutdown_timeout,
    show_default=True,
    help="Seconds the job in hand may run on after SIGTERM before it is handed back.",
)
@click.argument("queues", nargs=-1)
@with_appcontext
def worker_command(burst: bool, name: str | None, shutdown_timeout: float, queues: tuple[str, ...]) -> None:
    """Work QUEUES in priority order (default: critical high normal low) until SIGTERM; ``webhooks`` is the
    webhook dispatcher's own queue.

    SIGTERM finishes the job in hand and exits; see HeraldWorker for what happens to a job that takes longer.
    """
    known = (*QUEUE_NAMES, WEBHOOK_QUEUE)
    unknown = [q for q in queues if q not in known]
    if unknown:
        raise click.BadParameter(f"unknown queue {unknown[0]!r}; choose from {', '.join(known)}", param_hint="QUEUE")
    ordered = tuple(q for q in known if q in queues) if queues else QUEUE_NAMES
    work_through_redis_outages(ordered, name, burst, shutdown_timeout)


def work_through_redis_outages(
    queue_names: tuple[str, ...], name: str | None, burst: bool, shutdown_timeout: float | None = None
) -> None:
    """Work until stopped, across Redis outages.

    RQ waits out a Redis outage only while it is idle; one that lands mid-job makes ``work()`` quit. Then this
    waits for Redis and starts a fresh worker. The job in hand had done its database work; if Redis lost it,
    the reaper re-drives what it left unfinished.
    """
    while True:
        wait_for_redis(get_redis())
        worker = build_worker(queue_names, name=name, shutdown_timeout=shutdown_timeout)
        try:
            worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
        except (RedisConnectionError, RedisTimeoutError):
            pass  # its teardown could not reach Redis either
        if burst or worker.stopping:
            return
        log.warning("the worker lost Redis mid-job; it starts again once Redis answers")


def wait_for_redis(connection, pause: float = 1.0) -> None:
    while True:
        try:
            connection.ping()
            return
        except (RedisConnectionError, RedisTimeoutError):
            time.sleep(pause)
