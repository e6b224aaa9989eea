"""Campaigns (template + audience + schedule) and the batches their fan-out is cut into."""

from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import BigId, Json, UTCDateTime, utcnow

DRAFT = "draft"
RUNNING = "running"
PAUSED = "paused"
CANCELLED = "cancelled"
FINISHED = "finished"
CAMPAIGN_STATUSES = (DRAFT, RUNNING, PAUSED, CANCELLED, FINISHED)

SEND_NOW = "now"
SEND_AT = "at"
SEND_LOCAL = "local"
SCHEDULES = (SEND_NOW, SEND_AT, SEND_LOCAL)

BATCH_PENDING = "pending"
BATCH_DONE = "done"
BATCH_CANCELLED = "cancelled"


class Campaign(db.Model):
    """One message to an audience. The filter is a snapshot: editing a saved audience later changes nothing here."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    # None for an API run with literal title/body (``content`` then holds it).
    template_id: Mapped[int | None] = mapped_column(ForeignKey("templates.id"))
    # Pinned at launch; until then the template's current version is what a test send uses.
    template_version: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[list] = mapped_column(Json)
    audience_filter: Mapped[dict] = mapped_column(Json)
    # The saved audience the filter was copied from, kept as a label only.
    audience_name: Mapped[str | None] = mapped_column(String(255))
    schedule: Mapped[str] = mapped_column(String(16), default=SEND_NOW)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    local_time: Mapped[time | None] = mapped_column(Time)
    throttle_per_minute: Mapped[int | None] = mapped_column(Integer)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    # API runs (a send to a topic or a saved audience): the payload's type, category, priority, title, body,
    # data and collapse key; None for console campaigns, whose template says them.
    content: Mapped[dict | None] = mapped_column(Json)
    planned: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_campaigns_status_created", "status", "created_at"),)


class CampaignBatch(db.Model):
    """About 1000 recipients of one campaign: a keyset range of recipient ids, optionally one time zone's wave.

    The batch job re-selects ``audience AND first_id <= id <= last_id [AND zone]`` when it runs,
    so a batch is a few numbers, not a list of ids.
    """

    __tablename__ = "campaign_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    first_id: Mapped[int] = mapped_column(BigId)
    last_id: Mapped[int] = mapped_column(BigId)
    size: Mapped[int] = mapped_column(Integer)
    # Local-time waves select one time zone (None = recipients without one); other schedules select all.
    by_zone: Mapped[bool] = mapped_column(Boolean, default=False)
    zone: Mapped[str | None] = mapped_column(String(64))
    run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=BATCH_PENDING)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("campaign_id", "seq"),
        Index("ix_campaign_batches_campaign_status", "campaign_id", "status"),
    )
