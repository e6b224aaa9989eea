"""Turning a launched campaign into a broadcast: the one decision point of the campaign path.

``plan_campaign`` (app/campaigns/batches.py) asks :func:`launch_if_broadcast`
before planning batches. The answer is cheap whatever the audience size: the
audience is counted only up to the threshold + 1. A broadcast is then one row
and one pub/sub event; the full audience count ("targeted" on the campaign
page) is taken afterwards and only fills in a number.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import func, select, update

from app import tasks
from app.audiences.filters import compile_filter
from app.campaigns import progress
from app.campaigns.fanout import campaign_context
from app.campaigns.planning import first_send_time
from app.channels import inbox_channel
from app.extensions import db
from app.models import Broadcast, Campaign, Recipient
from app.models.bulk import insert_ignoring_conflicts
from app.models.campaigns import SEND_LOCAL
from app.realtime.publish import broadcast_channel, publish

EVENT = "broadcast"


def eligible(channels: list[str], schedule: str, throttle_per_minute: int | None) -> bool:
    """Pure: what a broadcast can be -- in-app only, one send instant (no local-time waves, no throttle)."""
    return list(channels) == [inbox_channel()] and schedule != SEND_LOCAL and not throttle_per_minute


def audience_condition(audience_filter: dict, launched_at: datetime):
    """Who a broadcast targets: the filter, among recipients who existed when it launched."""
    dialect = db.session.get_bind().dialect.name
    return compile_filter(audience_filter, dialect, launched_at) & (Recipient.created_at <= launched_at)


def bounded_count(condition, limit: int) -> int:
    """How many recipients match, counting no further than ``limit`` (a 10M audience costs ``limit`` rows)."""
    matched = select(Recipient.id).where(condition).limit(limit).subquery()
    return db.session.scalar(select(func.count()).select_from(matched)) or 0


def launch_if_broadcast(campaign: Campaign, now: datetime) -> bool:
    """Store ``campaign`` as a broadcast if it is one (True), else leave it to batch planning (False). Safe to
    repeat: an existing broadcast row answers True again."""
    existing = db.session.scalar(select(Broadcast).where(Broadcast.campaign_id == campaign.id))
    if existing is None:
        threshold = current_app.config["BROADCAST_THRESHOLD"]
        launched_at = first_send_time(campaign.schedule, campaign.send_at, campaign.launched_at or now)
        if not eligible(campaign.channels, campaign.schedule, campaign.throttle_per_minute):
            return False
        if campaign.ends_at is not None and launched_at >= campaign.ends_at:
            return False  # the fan-out records it as campaign_ended
        size = bounded_count(audience_condition(campaign.audience_filter, launched_at), threshold + 1)
        if size <= threshold:
            return False
        _store(campaign, launched_at)
        existing = db.session.scalar(select(Broadcast).where(Broadcast.campaign_id == campaign.id))
    if existing.targeted is None:
        # First run, or a re-run after a crash before the count: announce (again -- a repeat only makes open
        # pages reload their list), then count.
        if existing.launched_at <= now:
            announce(existing.id)
        else:  # "send at" a later time: visible from then (the inbox reads launched_at), announced then
            tasks.enqueue("jobs.campaigns.announce_broadcast", existing.id, priority="high", at=existing.launched_at)
        count_targeted(existing)
    return True


def _store(campaign: Campaign, launched_at: datetime) -> None:
    note = campaign_context(campaign).note
    insert_ignoring_conflicts(
        Broadcast,
        [
            {
                "campaign_id": campaign.id,
                "audience_filter": campaign.audience_filter,
                "type": note.type,
                "category": note.category,
                "priority": note.priority,
                "launched_at": launched_at,
                "targeted": None,
            }
        ],
        ["campaign_id"],
    )
    db.session.commit()


def announce(broadcast_id: int) -> None:
    """The one live event of a launch: every web process's hub hears it and tells its targeted streams."""
    publish({"broadcast": broadcast_id}, type=EVENT, channel=broadcast_channel())


def count_targeted(broadcast: Broadcast) -> int:
    """The audience at launch, counted once (one scan, after the broadcast is already visible)."""
    condition = audience_condition(broadcast.audience_filter, broadcast.launched_at)
    count = db.session.scalar(select(func.count()).select_from(Recipient).where(condition)) or 0
    db.session.execute(update(Broadcast).where(Broadcast.id == broadcast.id).values(targeted=count))
    db.session.execute(update(Campaign).where(Campaign.id == broadcast.campaign_id).values(planned=count))
    db.session.commit()
    status = db.session.scalar(select(Campaign.status).where(Campaign.id == broadcast.campaign_id))
    progress.set_status(broadcast.campaign_id, status, planned=count)
    return count
