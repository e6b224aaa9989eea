"""A campaign's live counters: one Redis hash per campaign, incremented in the batch's pipeline.

Fields: ``planned``, ``notified``, ``sent:<channel>``, ``suppressed:<reason>``,
``failed``, ``uncertain`` (marketing in flight when a worker died, not sent twice) and ``status``. Redis keeps nothing on disk here, so the database
stays the truth: :func:`read` rebuilds a lost hash from the delivery rows.
"""

from __future__ import annotations

from sqlalchemy import func, select, update

from app.delivery.constants import DELIVERED, DISPATCHED, FAILED, PENDING, SENDING, SUPPRESSED, UNCERTAIN
from app.extensions import db
from app.models import Campaign, CampaignBatch, Delivery, Notification
from app.models.campaigns import BATCH_PENDING, FINISHED, RUNNING
from app.models.types import utcnow
from app.redis_client import get_redis, key


def progress_key(campaign_id: int) -> str:
    return key("campaign", campaign_id, "progress")


def add(pipe, campaign_id: int, counts: dict[str, int]) -> None:
    """Queue HINCRBYs on ``pipe`` (the caller executes it with its other commands)."""
    name = progress_key(campaign_id)
    for field, amount in counts.items():
        if amount:
            pipe.hincrby(name, field, amount)


def set_status(campaign_id: int, status: str, planned: int | None = None) -> None:
    mapping = {"status": status}
    if planned is not None:
        mapping["planned"] = planned
    get_redis().hset(progress_key(campaign_id), mapping=mapping)


def parse(raw: dict) -> tuple[str | None, dict[str, int]]:
    """(status, numeric counters) from a raw HGETALL answer."""
    status, counters = None, {}
    for field, value in raw.items():
        field = field.decode() if isinstance(field, bytes) else field
        value = value.decode() if isinstance(value, bytes) else value
        if field == "status":
            status = value
        else:
            counters[field] = int(value)
    return status, counters


def read(campaign_id: int, status: str, planned: int) -> dict[str, int]:
    """The counters, rebuilt from the database if Redis lost them."""
    raw = get_redis().hgetall(progress_key(campaign_id))
    _status, counters = parse(raw)
    if "status" not in {(f.decode() if isinstance(f, bytes) else f) for f in raw}:
        counters = delivery_counts(campaign_id)
        counters["planned"] = planned
        pipe = get_redis().pipeline()
        pipe.delete(progress_key(campaign_id))
        pipe.hset(progress_key(campaign_id), mapping={**counters, "status": status})
        pipe.execute()
    return counters


def finish_if_complete(campaign_id: int) -> bool:
    """A running campaign is finished once no batch waits and no delivery of it is still to be sent."""
    if (
        db.session.scalar(
            select(CampaignBatch.id)
            .where(CampaignBatch.campaign_id == campaign_id, CampaignBatch.status == BATCH_PENDING)
            .limit(1)
        )
        is not None
    ):
        return False
    unsent = db.session.scalar(
        select(Delivery.id)
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Notification.campaign_id == campaign_id, Delivery.status.in_((PENDING, SENDING)))
        .limit(1)
    )
    if unsent is not None:
        return False
    now = utcnow()
    done = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == RUNNING)
        .values(status=FINISHED, finished_at=now, updated_at=now)
    ).rowcount
    db.session.commit()
    if done:
        set_status(campaign_id, FINISHED)
    return bool(done)


def delivery_counts(campaign_id: int) -> dict[str, int]:
    """The counters rebuilt from the database (when Redis lost them): same field names."""
    counts: dict[str, int] = {}
    rows = db.session.execute(
        select(Delivery.channel, Delivery.status, Delivery.reason, func.count())
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Notification.campaign_id == campaign_id)
        .group_by(Delivery.channel, Delivery.status, Delivery.reason)
    ).all()
    for channel, status, reason, count in rows:
        if status in (DISPATCHED, DELIVERED):
            field = f"sent:{channel}"
        elif status == SUPPRESSED:
            field = f"suppressed:{reason}"
        elif status == FAILED:
            field = "failed"
        elif status == UNCERTAIN:
            field = "uncertain"
        else:
            continue
        counts[field] = counts.get(field, 0) + count
    counts["notified"] = (
        db.session.scalar(select(func.count()).select_from(Notification).where(Notification.campaign_id == campaign_id))
        or 0
    )
    return counts
