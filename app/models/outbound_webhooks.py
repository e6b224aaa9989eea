"""Outbound webhooks: the endpoints admins register, the outbox of messages to them, and every attempt.

Not to be confused with app/webhooks/ (INBOUND provider callbacks). See app/outbound_webhooks/.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import BigId, Json, UTCDateTime, utcnow


class WebhookEndpoint(db.Model):
    """A URL of the host product's that hears the event types it chose, signed with its own secret."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(255), default="")
    event_types: Mapped[list] = mapped_column(Json)
    # Kept in clear: every send is signed with it (``whsec_`` + base64, the Standard Webhooks form).
    secret: Mapped[str] = mapped_column(String(128))
    # After a rotation the old secret also signs for a day, so receivers can switch without losing messages.
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    # Since when every attempt has failed (None after any success), and how many in a row.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookMessage(db.Model):
    """The outbox: one row per (endpoint, event), written in the transaction that records the event."""

    __tablename__ = "webhook_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # The ``webhook-id`` header: the same on every attempt and replay, so receivers can drop repeats.
    msg_id: Mapped[str] = mapped_column(String(40), unique=True)
    event_type: Mapped[str] = mapped_column(String(64))
    # Messages of one (endpoint, ordering key) go one at a time, oldest first; the key is the recipient's user id.
    ordering_key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict] = mapped_column(Json)
    # pending -> sending (claimed) -> delivered | failed (gave up); a replay sets it pending again.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_webhook_messages_open", "status", "endpoint_id", "ordering_key", "id"),
        Index("ix_webhook_messages_endpoint", "endpoint_id", "id"),
    )


class WebhookAttempt(db.Model):
    """One POST of a message: what the endpoint answered and how long it took. Append-only."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("webhook_messages.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
