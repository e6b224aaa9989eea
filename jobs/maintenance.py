"""The safety net: re-drive whatever a crash left behind.

Every step of the pipeline is idempotent (unique deliveries, conditional
claims), so re-driving is always safe; this module only has to *find* the
work. It runs every 30 s from the scheduler process.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta

from rq.registry import StartedJobRegistry
from sqlalchemy import and_, delete, or_, select

from app.campaigns.runs import relaunch_unplanned
from app.config import QUEUE_NAMES
from app.delivery.constants import PENDING, SENDING
from app.extensions import db
from app.models import Delivery, IdempotencyKey, Notification
from app.models.types import utcnow
from app.redis_client import get_redis
from app.tasks import deliver_later, enqueue, get_queue

log = logging.getLogger(__name__)

# How long a PENDING row may wait for its job before we assume the job was lost
# (process died between commit and enqueue, or Redis lost its scheduled jobs).
STALE_AFTER = timedelta(minutes=10)
BATCH = 1000


# A scheduled job this late has no RQ scheduler moving it (the worker holding the scheduler's lock died,
# and the lock outlives it for a while): the reaper queues it instead.
SCHEDULER_GRACE_SECONDS = 5


def requeue_abandoned_jobs() -> None:
    """Let RQ retry jobs whose worker died mid-job (its StartedJobRegistry cleanup), and queue overdue scheduled jobs.

    Herald's workers heartbeat the job in hand with the dispatch lease as time-to-live (``jobs/worker.py``), so a
    killed worker's job is seen abandoned once the lease is over -- not after RQ's job timeout.
    """
    connection = get_redis()
    for name in QUEUE_NAMES:
        queue = get_queue(name)
        StartedJobRegistry(queue=queue, connection=connection).cleanup()
        release_overdue_scheduled_jobs(queue)


def release_overdue_scheduled_jobs(queue) -> int:
    """What RQ's scheduler does for a due job, for the ones it has left overdue; ZREM decides who moves each one."""
    registry = queue.scheduled_job_registry
    moved = 0
    for job_id in registry.get_jobs_to_schedule(int(time.time()) - SCHEDULER_GRACE_SECONDS):
        if queue.connection.zrem(registry.key, job_id):
            job = queue.fetch_job(job_id)
            if job is not None:
                queue.enqueue_job(job)
                moved += 1
    return moved


def redrive_stuck_work(now: datetime, lease_seconds: int, stale_after: timedelta = STALE_AFTER) -> dict[str, int]:
    """Enqueue unrouted notifications, forgotten PENDING deliveries (stale, or overdue by more than a lease) and
    SENDING claims whose lease ran out."""
    stale = now - stale_after
    unrouted = db.session.execute(
        select(Notification.id, Notification.priority)
        .where(
            Notification.status == "accepted",
            Notification.created_at < stale,
            or_(Notification.send_at.is_(None), Notification.send_at < stale),
        )
        .limit(BATCH)
    ).all()
    for notification_id, priority in unrouted:
        enqueue("jobs.delivery.route_notification", notification_id, priority=priority)

    lease_expired = now - timedelta(seconds=lease_seconds)
    stuck = db.session.execute(
        select(Delivery.id, Notification.priority)
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(
            or_(
                and_(
                    Delivery.status == PENDING,
                    Delivery.updated_at < stale,
                    or_(Delivery.not_before.is_(None), Delivery.not_before < stale),
                ),
                # Handed back for a time that passed more than a lease ago: the job that should have taken it was
                # lost (its sender died between recording the wait and enqueueing it). A duplicate of a job that is
                # merely late in a backlog is harmless: the claim lets one of them send.
                and_(
                    Delivery.status == PENDING,
                    Delivery.updated_at < lease_expired,
                    Delivery.not_before < lease_expired,
                ),
                and_(Delivery.status == SENDING, Delivery.claimed_at < lease_expired),
            )
        )
        .limit(BATCH)
    ).all()
    # Whatever their origin: the pipeline re-checks it (a campaign's pause, a rule's send window) before sending.
    by_priority: dict[str, list[int]] = defaultdict(list)
    for delivery_id, priority in stuck:
        by_priority[priority].append(delivery_id)
    for priority, delivery_ids in by_priority.items():
        deliver_later(delivery_ids, priority)
    runs = relaunch_unplanned(stale)
    db.session.remove()
    if unrouted or stuck or runs:
        log.warning(
            "re-drove %d unrouted notifications, %d stuck deliveries and %d unplanned runs",
            len(unrouted),
            len(stuck),
            runs,
        )
    return {"notifications": len(unrouted), "deliveries": len(stuck), "runs": runs}


def purge_expired_idempotency_keys(now: datetime) -> int:
    result = db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < now - timedelta(hours=24)))
    db.session.commit()
    return result.rowcount


def run_maintenance(lease_seconds: int) -> dict[str, int]:
    requeue_abandoned_jobs()
    return redrive_stuck_work(utcnow(), lease_seconds)
