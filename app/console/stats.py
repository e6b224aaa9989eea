"""The numbers on the console dashboard, read straight from the database and Redis."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from redis.exceptions import RedisError
from sqlalchemy import func, select

from app.delivery.constants import DELIVERY_STATUSES
from app.extensions import db
from app.models import Delivery, Notification, Recipient
from app.models.types import utcnow
from jobs.queues import queue_depths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DashboardCounts:
    recipients: int
    notifications_today: int
    deliveries_by_status: dict[str, int]
    # None when Redis does not answer: the dashboard says so instead of failing.
    queues: dict[str, dict[str, int]] | None
    as_of: datetime


def utc_day_bounds(moment: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar day holding ``moment``, as a half-open [start, end) interval."""
    start = moment.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def complete_status_counts(rows: dict[str, int]) -> dict[str, int]:
    """Every known delivery status in pipeline order, zero when no delivery has it."""
    return {status: int(rows.get(status, 0)) for status in DELIVERY_STATUSES}


def _count(statement) -> int:
    return int(db.session.scalar(statement) or 0)


def _queue_depths_or_none() -> dict[str, dict[str, int]] | None:
    try:
        return queue_depths()
    except RedisError:
        log.warning("dashboard: Redis did not answer; queue depths left out", exc_info=True)
        return None


def dashboard_counts(now: datetime | None = None) -> DashboardCounts:
    now = now or utcnow()
    day_start, day_end = utc_day_bounds(now)
    by_status = db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    return DashboardCounts(
        recipients=_count(select(func.count()).select_from(Recipient)),
        notifications_today=_count(
            select(func.count())
            .select_from(Notification)
            .where(Notification.created_at >= day_start, Notification.created_at < day_end)
        ),
        deliveries_by_status=complete_status_counts(dict(by_status)),
        queues=_queue_depths_or_none(),
        as_of=now,
    )
