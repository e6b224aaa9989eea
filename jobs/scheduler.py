"""``flask scheduler``: periodic work with APScheduler, run by exactly one active scheduler process.

Run one per host if you like: every scheduler is a candidate for a lease in
Redis (``app/leadership.py``); the one holding it runs the periodic jobs, the
others stand by with their APScheduler paused and take over within the lease
(``HERALD_SCHEDULER_LEASE_SECONDS``) after the active one dies or loses Redis.
A per-job Redis lock stays as a second fence: a job still running in a
deposed leader keeps its lock, so the new leader skips that job until it ends.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

import click
from apscheduler.schedulers.background import BackgroundScheduler
from flask import current_app
from flask.cli import with_appcontext
from redis.exceptions import LockError

from app.leadership import LEADER_KEY_PARTS, Leadership, LeaseTiming, RedisLease, holder_label
from app.models.types import utcnow
from app.redis_client import connect, get_redis, key

log = logging.getLogger(__name__)


def locked(name: str, ttl: int, may_run=lambda: True):
    """Wrap a periodic job: it runs only while ``may_run()`` (this process leads) and only one process runs it at a
    time, inside the app context."""
    app = current_app._get_current_object()

    def run():
        if not may_run():
            return
        with app.app_context():
            lock = get_redis().lock(key("scheduler-lock", name), timeout=ttl, blocking=False)
            if not lock.acquire():
                return
            try:
                PERIODIC_JOBS[name][0]()
            except Exception:
                log.exception("periodic job %s failed; it will run again on schedule", name)
            finally:
                try:
                    lock.release()
                except LockError:  # expired meanwhile: nothing to release
                    pass

    return run


def _maintenance():
    from jobs.maintenance import run_maintenance

    run_maintenance(current_app.config["DISPATCH_LEASE_SECONDS"])


def _purge():
    from jobs.maintenance import purge_expired_idempotency_keys

    purge_expired_idempotency_keys(utcnow())


def _retention():
    from jobs.retention import purge_expired_history

    purge_expired_history(utcnow(), current_app.config["RETENTION_DAYS"])


def _rules():
    """Ticks every minute; evaluates once per RULES_EVALUATION_MINUTES clock slot (see jobs.rules)."""
    from jobs.rules import evaluate_rules_if_due

    evaluate_rules_if_due(utcnow(), current_app.config["RULES_EVALUATION_MINUTES"])


def _webhooks():
    """Nudges the webhook dispatcher when a message is due that no nudge announced (a retry, a lost nudge)."""
    from app.outbound_webhooks.dispatch import tick

    tick()


def _workflows():
    """Re-drives workflow runs whose wait ended or whose worker's lease ran out: waits live in the database."""
    from jobs.workflows import redrive_due_runs

    redrive_due_runs()


# name -> (function, interval in seconds)
PERIODIC_JOBS = {
    "maintenance": (_maintenance, 30),
    "purge-idempotency-keys": (_purge, 3600),
    "purge-expired-history": (_retention, 3600),
    "evaluate-rules": (_rules, 60),
    "outbound-webhooks": (_webhooks, 10),
    "workflows": (_workflows, 5),
}


def build_scheduler(may_run=lambda: True) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}
    )
    for name, (_func, seconds) in PERIODIC_JOBS.items():
        scheduler.add_job(
            locked(name, ttl=max(seconds * 2, 60), may_run=may_run),
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            next_run_time=utcnow(),
        )
    return scheduler


def lead_while_elected(
    scheduler: BackgroundScheduler,
    lease: RedisLease,
    leadership: Leadership,
    stop: threading.Event,
    clock=time.monotonic,
) -> None:
    """Until ``stop``: hold or seek the lease; run the (paused) scheduler exactly while this process leads.

    The jobs themselves check ``leadership.active`` as they start (``locked``), so none starts past the deadline
    even while this loop is blocked in a Redis call; pausing here keeps APScheduler from even trying.
    """
    leading = False
    while not stop.is_set():
        leading = follow(scheduler, lease.holder, leading, leadership.active(clock()))  # deadline passed while asleep
        asked_at = clock()
        leadership.record(asked_at, lease.try_hold())
        leading = follow(scheduler, lease.holder, leading, leadership.active(clock()))
        stop.wait(leadership.wait(clock()))
    scheduler.pause()


def follow(scheduler: BackgroundScheduler, holder: str, leading: bool, active: bool) -> bool:
    """Resume or pause the scheduler when leadership changed; returns whether this process now leads."""
    if active and not leading:
        for job in scheduler.get_jobs():  # a new leader catches up at once instead of at each job's next tick
            job.modify(next_run_time=utcnow())
        scheduler.resume()
        log.warning("this scheduler (%s) is now the active one", holder)
    elif leading and not active:
        scheduler.pause()
        log.warning("this scheduler (%s) lost its lease; standing by", holder)
    return active


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@click.command("scheduler")
@with_appcontext
def scheduler_command() -> None:
    """Run periodic work (re-drive, clean-up and retention; rule evaluation) while this process holds the lease,
    until SIGTERM or SIGINT.

    The lease is sought and renewed in a thread of its own; the passes run in APScheduler's threads; this thread
    only waits for the signal, then stops seeking the lease, stops the timers, lets a pass in progress finish (and
    release its lock) and hands the lease back. Shutting down from inside a signal handler could deadlock: the
    handler may interrupt a thread while it holds the thread pool's lock to submit a pass.
    """
    timing = LeaseTiming(current_app.config["SCHEDULER_LEASE_SECONDS"])
    leadership = Leadership(timing)
    scheduler = build_scheduler(may_run=lambda: leadership.active(time.monotonic()))
    # A lease call blocks at most half the safety margin, so the leader notices in time that it cannot renew.
    client = connect(
        current_app.config["REDIS_URL"], socket_timeout=timing.margin / 2, socket_connect_timeout=timing.margin / 2
    )
    lease = RedisLease(client, key(*LEADER_KEY_PARTS), timing.lease, holder_label())
    # Blocked before any thread starts, so every thread inherits the mask and sigwait below receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    # APScheduler logs two lines per run at INFO (every 30 s); failures still reach the log as warnings and errors.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    log.info("scheduler %s started with jobs: %s; seeking the lease", lease.holder, ", ".join(PERIODIC_JOBS))
    scheduler.start(paused=True)
    stop = threading.Event()
    candidate = threading.Thread(
        target=lead_while_elected, args=(scheduler, lease, leadership, stop), name="scheduler-lease"
    )
    candidate.start()
    received = signal.sigwait(STOP_SIGNALS)
    log.info("%s received; stopping once the passes in progress finish", signal.Signals(received).name)
    stop.set()
    candidate.join()
    scheduler.shutdown(wait=True)
    lease.release()  # only now may a standby start periodic work
