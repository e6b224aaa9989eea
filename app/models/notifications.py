"""Notifications, their per-channel deliveries, the event log and idempotency keys."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.delivery.constants import PENDING
from app.extensions import db
from app.models.types import BigId, Json, UTCDateTime, utcnow


def new_notification_id() -> str:
    return uuid.uuid4().hex


class Notification(db.Model):
    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_notification_id)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16))
    template_key: Mapped[str | None] = mapped_column(String(128))
    template_version: Mapped[int | None] = mapped_column(Integer)
    title: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(Json, default=dict)
    channels: Mapped[list] = mapped_column(Json)
    collapse_key: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # accepted -> routed (deliveries exist). The reaper re-enqueues "accepted" ones left behind.
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the in-app delivery lands: the notification is then in the inbox.
    inbox_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The first time the recipient followed the notification's link, on any channel (see app/delivery/tracking.py).
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    clicked_channel: Mapped[str | None] = mapped_column(String(16))
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Campaign sends only; with the unique (campaign, recipient) index it makes fan-out re-runs insert nothing twice.
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    # Who made it: "api", "campaign:<id>" or "rule:<id>" -- the pipeline re-checks that origin's policy before
    # every send (app/pipeline/origin.py).
    origin: Mapped[str] = mapped_column(String(64), default="api", server_default="api")
    # Workflow steps only: the workflow and step index that made it, for analytics and /metrics by workflow and
    # step. Not a foreign key: sends outlive a deleted workflow (they then drop out of the breakdown).
    workflow_id: Mapped[int | None] = mapped_column(BigId)
    workflow_step: Mapped[int | None] = mapped_column(Integer)

    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="notification", cascade="all, delete-orphan", passive_deletes=True, order_by="Delivery.id"
    )

    __table_args__ = (
        Index("ix_notifications_inbox", "recipient_id", "inbox_at", "id"),
        Index("ix_notifications_status_created", "status", "created_at"),
        Index("ix_notifications_created", "created_at"),
        Index("ix_notifications_campaign_recipient", "campaign_id", "recipient_id", unique=True),
        Index(
            "ix_notifications_workflow",
            "workflow_id",
            "created_at",
            sqlite_where=text("workflow_id IS NOT NULL"),
            postgresql_where=text("workflow_id IS NOT NULL"),
        ),
    )


class Delivery(db.Model):
    """One notification on one channel; the unique pair is what makes routing idempotent."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str | None] = mapped_column(String(64))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(255))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dead_lettered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    notification: Mapped[Notification] = relationship(back_populates="deliveries")
    events: Mapped[list[DeliveryEvent]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="DeliveryEvent.id"
    )

    __table_args__ = (
        UniqueConstraint("notification_id", "channel"),
        Index("ix_deliveries_status_updated", "status", "updated_at"),
        Index("ix_deliveries_dead_lettered", "dead_lettered_at"),
        # Provider receipts (SMS status callbacks, email bounces) find their delivery by the provider's id.
        Index("ix_deliveries_provider_message", "channel", "provider_message_id"),
    )

    @property
    def provider_idempotency_key(self) -> str:
        """Stable across retries and re-drives, so a provider can drop a repeat."""
        return f"herald-{self.notification_id}-{self.channel}"


class DeliveryEvent(db.Model):
    """Append-only record of every transition of a delivery."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(db.Model):
    """A caller's idempotency key, reserved for 24 h; the unique pair decides the winner."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("api_key_id", "key"), Index("ix_idempotency_keys_created", "created_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    # What the first request made: one notification, or a run (a topic or audience send, see app/campaigns/runs.py).
    notification_id: Mapped[str | None] = mapped_column(String(32))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    # Or a workflow run (a trigger, app/workflows/trigger.py).
    workflow_run_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
