"""The numbers on the console dashboard: database counts shared through a Redis snapshot, queue depths live.

Exact counts over millions of deliveries take a second or more, and every
open dashboard polls every 5 s. So the counts are kept as one snapshot in
Redis for all viewers and web processes. While counting is cheap (a young
install, the tests) every request counts afresh. Once it is not, a request
is answered from the snapshot at once, and when the snapshot is older than
the poll interval one request (a Redis lock decides which) enqueues a
refresh for the workers (``jobs.dashboard``): the page shows counts at most
a poll or two old, with their time, and never waits for them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import func, select

from app import tasks
from app.delivery.constants import DELIVERY_STATUSES
from app.extensions import db
from app.models import Delivery, Notification, Recipient
from app.models.types import utcnow
from app.redis_client import get_redis, key

log = logging.getLogger(__name__)

# The dashboard polls every 5 s; a snapshot this old is refreshed in the background.
REFRESH_SECONDS = 5.0
# Counting faster than this is done on every request: exact numbers cost nothing there.
CHEAP_SECONDS = 0.05
SNAPSHOT_TTL = 3600
# Enqueued by name, so app/ does not import jobs/; the lock lasts as long as the job may run.
REFRESH_JOB = "jobs.dashboard.refresh_dashboard_counts"
REFRESH_LOCK_SECONDS = tasks.JOBS[REFRESH_JOB].timeout
REFRESH_QUEUE = "normal"


@dataclass(frozen=True)
class DatabaseCounts:
    recipients: int
    notifications_today: int
    deliveries_by_status: dict[str, int]
    as_of: datetime
    # How long counting took: decides whether the next request counts afresh or reads the snapshot.
    took: float

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "as_of": self.as_of.isoformat()})

    @classmethod
    def from_json(cls, raw: bytes | str) -> DatabaseCounts:
        values = json.loads(raw)
        return cls(**{**values, "as_of": datetime.fromisoformat(values["as_of"])})


@dataclass(frozen=True)
class DashboardCounts(DatabaseCounts):
    """The database counts (possibly from the shared snapshot, ``as_of`` says when) and the queue depths, live."""

    # None when Redis does not answer: the dashboard says so instead of failing.
    queues: dict[str, dict[str, int]] | None = None


def utc_day_bounds(moment: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar day holding ``moment``, as a half-open [start, end) interval."""
    start = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def complete_status_counts(rows: dict[str, int]) -> dict[str, int]:
    """Every known delivery status in pipeline order, zero when no delivery has it."""
    return {status: int(rows.get(status, 0)) for status in DELIVERY_STATUSES}


def snapshot_action(snapshot: DatabaseCounts | None, now: datetime) -> str:
    """What a request does with the shared snapshot: ``count`` afresh, ``refresh`` it in the background, or ``use`` it."""
    if snapshot is None or snapshot.took < CHEAP_SECONDS:
        return "count"
    if (now - snapshot.as_of).total_seconds() >= REFRESH_SECONDS:
        return "refresh"
    return "use"


def _count(statement) -> int:
    return int(db.session.scalar(statement) or 0)


def count_database(now: datetime) -> DatabaseCounts:
    started = time.perf_counter()
    day_start, day_end = utc_day_bounds(now)
    by_status = db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    recipients = _count(select(func.count()).select_from(Recipient))
    today = _count(
        select(func.count())
        .select_from(Notification)
        .where(Notification.created_at >= day_start, Notification.created_at < day_end)
    )
    return DatabaseCounts(
        recipients, today, complete_status_counts(dict(by_status)), now, time.perf_counter() - started
    )


def _snapshot_key() -> str:
    return key("dashboard", "counts")


def _read_snapshot() -> DatabaseCounts | None:
    raw = get_redis().get(_snapshot_key())
    return DatabaseCounts.from_json(raw) if raw else None


def _store(counts: DatabaseCounts) -> None:
    get_redis().set(_snapshot_key(), counts.to_json(), ex=SNAPSHOT_TTL)


def _refresh_lock() -> str:
    return key("dashboard", "refreshing")


def refresh_snapshot() -> DatabaseCounts:
    """Count once for every viewer and web process, then let the next refresh be requested."""
    try:
        counts = count_database(utcnow())
        _store(counts)
        return counts
    finally:
        get_redis().delete(_refresh_lock())


def request_refresh() -> bool:
    """Ask the workers for one refresh for all viewers; a request that loses the lock race just shows the
    snapshot it has. True when this call enqueued the refresh."""
    if not get_redis().set(_refresh_lock(), "1", nx=True, ex=REFRESH_LOCK_SECONDS):
        return False
    tasks.enqueue(REFRESH_JOB, priority=REFRESH_QUEUE)
    return True


def database_counts(now: datetime) -> DatabaseCounts:
    try:
        snapshot = _read_snapshot()
    except (RedisError, ValueError, TypeError):
        log.warning("dashboard: no usable snapshot in Redis; counting directly", exc_info=True)
        return count_database(now)
    action = snapshot_action(snapshot, now)
    if action == "count":
        counts = count_database(now)
        try:
            _store(counts)
        except RedisError:
            log.warning("dashboard: could not store the counts snapshot", exc_info=True)
        return counts
    if action == "refresh":
        try:
            request_refresh()
        except RedisError:
            log.warning("dashboard: could not request a refresh of the counts", exc_info=True)
    return snapshot


def _queue_depths_or_none() -> dict[str, dict[str, int]] | None:
    try:
        return tasks.queue_depths()
    except RedisError:
        log.warning("dashboard: Redis did not answer; queue depths left out", exc_info=True)
        return None


def dashboard_counts(now: datetime | None = None) -> DashboardCounts:
    counts = database_counts(now or utcnow())
    return DashboardCounts(**counts.__dict__, queues=_queue_depths_or_none())
