"""Recipients and what they own: devices, preferences; plus suppression lists."""

from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import Boolean, ForeignKey, String, Text, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.channels.base import canonical_address
from app.extensions import db
from app.models.types import BigId, Json, UTCDateTime, utcnow


class Recipient(db.Model):
    __tablename__ = "recipients"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    timezone: Mapped[str | None] = mapped_column(String(64), index=True)
    locale: Mapped[str] = mapped_column(String(16), default="en")
    attributes: Mapped[dict] = mapped_column(Json, default=dict)
    hard_stop: Mapped[bool] = mapped_column(Boolean, default=False)
    quiet_start: Mapped[time | None] = mapped_column(Time)
    quiet_end: Mapped[time | None] = mapped_column(Time)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    devices: Mapped[list[Device]] = relationship(
        back_populates="recipient", cascade="all, delete-orphan", passive_deletes=True
    )
    preferences: Mapped[list[Preference]] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    digest_preferences: Mapped[list[DigestPreference]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Recipient {self.external_id}>"


class Device(db.Model):
    """A mobile token or a web-push subscription; a token belongs to one recipient at a time."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    # APNs/FCM token, or the web-push endpoint URL.
    token: Mapped[str] = mapped_column(Text, unique=True)
    # Web push only: the subscription's client keys (RFC 8291).
    p256dh: Mapped[str | None] = mapped_column(String(255))
    auth: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deactivated_reason: Mapped[str | None] = mapped_column(String(255))

    recipient: Mapped[Recipient] = relationship(back_populates="devices")


class Preference(db.Model):
    """Recipient x channel x category -> enabled. Category ``*`` is the channel's own switch."""

    __tablename__ = "preferences"

    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class DigestPreference(db.Model):
    """Recipient x category -> how often a workflow's digest step may bundle that category for them (``off``,
    ``hourly``, ``daily``); no row = the workflow's own window (see app/workflows/digest_frequency.py)."""

    __tablename__ = "digest_preferences"

    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    frequency: Mapped[str] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Suppression(db.Model):
    """Addresses that must never be contacted on a channel (bounces, complaints, STOP)."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320))

    @staticmethod
    def canonical(channel: str, address: str) -> str:
        """The one spelling stored and compared: email addresses are lower-case everywhere in Herald
        (recipients' too, see app.schemas.parse_email), so a bounce reported as ``Ana@X.com`` stops ``ana@x.com``.
        The channel registry says which channels' addresses compare case-insensitively."""
        return canonical_address(channel, address)

    reason: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
