"""``flask scheduler``: the one process that runs periodic work with APScheduler.

Running two by mistake is harmless: every periodic job is idempotent, and a
Redis lock per job keeps them from doing the same pass twice at once.
"""
from __future__ import annotations

import logging
import signal

import click
from apscheduler.schedulers.background import BackgroundScheduler
from flask import current_app
from flask.cli import with_appcontext
from redis.exceptions import LockError

from app.models.types import utcnow
from app.redis_client import get_redis, key

log = logging.getLogger(__name__)


def locked(name: str, ttl: int):
    """Wrap a periodic job so only one scheduler process runs it at a time, inside the app context."""
    app = current_app._get_current_object()

    def run():
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


# name -> (function, interval in seconds)
PERIODIC_JOBS = {
    "maintenance": (_maintenance, 30),
    "purge-idempotency-keys": (_purge, 3600),
    "purge-expired-history": (_retention, 3600),
    "evaluate-rules": (_rules, 60),
    "outbound-webhooks": (_webhooks, 10),
}


def build_scheduler() -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60})
    for name, (_func, seconds) in PERIODIC_JOBS.items():
        scheduler.add_job(locked(name, ttl=max(seconds * 2, 60)), "interval", seconds=seconds, id=name, name=name,
                          next_run_time=utcnow())
    return scheduler


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@click.command("scheduler")
@with_appcontext
def scheduler_command() -> None:
    """Run periodic work (re-drive, clean-up and retention; rule evaluation) until SIGTERM or SIGINT.

    The passes run in APScheduler's threads; this thread only waits for the signal, then stops the timers and
    lets a pass in progress finish (and release its lock). Shutting down from inside a signal handler could
    deadlock: the handler may interrupt this thread while it holds the thread pool's lock to submit a pass.
    """
    scheduler = build_scheduler()
    # Blocked before any thread starts, so every thread inherits the mask and sigwait below receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    # APScheduler logs two lines per run at INFO (every 30 s); failures still reach the log as warnings and errors.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    log.info("scheduler started with jobs: %s", ", ".join(PERIODIC_JOBS))
    scheduler.start()
    received = signal.sigwait(STOP_SIGNALS)
    log.info("%s received; stopping once the passes in progress finish", signal.Signals(received).name)
    scheduler.shutdown(wait=True)
