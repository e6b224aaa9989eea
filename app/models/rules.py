"""Daily rules (e.g. the low-balance alert) and their sent log, the dedup gate."""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import BigId, Json, UTCDateTime, utcnow

# RuleSend.status: a claim is taken before anything is sent; "sent" means the notification exists in the pipeline.
CLAIMED = "claimed"
SENT = "sent"
SUPPRESSED = "suppressed"  # opted out (or hard stop) between the claim and the send: nothing went out
EXPIRED = "expired"  # the claim's local day ended for the recipient before it could be sent
RULE_SEND_STATUSES = (CLAIMED, SENT, SUPPRESSED, EXPIRED)


class Rule(db.Model):
    """Audience predicate + template + local send window + "at most once per recipient per N local days"."""

    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    audience: Mapped[dict] = mapped_column(Json)
    type: Mapped[str] = mapped_column(String(16), default="transactional")
    category: Mapped[str] = mapped_column(String(64), default="low_balance")
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    template_key: Mapped[str] = mapped_column(String(128))
    channels: Mapped[list] = mapped_column(Json)
    window_start: Mapped[time] = mapped_column(Time)
    window_end: Mapped[time] = mapped_column(Time)
    every_days: Mapped[int] = mapped_column(Integer, default=1)
    # "utc": recipients without a time zone get the UTC window; "country": inferred from attributes.country.
    no_timezone_policy: Mapped[str] = mapped_column(String(16), default="utc")
    last_evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RuleSend(db.Model):
    """One row per (recipient, rule, local period): inserted as a claim before sending, so a retry never sends twice.

    ``local_date`` is the recipient's local date (or the first day of the period for "every N days").
    """

    __tablename__ = "rule_sends"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"))
    # Erasure deletes the recipient row; the cascade removes their sent log with it.
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    local_date: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(72))
    status: Mapped[str] = mapped_column(String(16), default=CLAIMED)
    reason: Mapped[str | None] = mapped_column(String(64))
    notification_id: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("recipient_id", "rule_id", "local_date"),
        Index("ix_rule_sends_rule_status", "rule_id", "status", "id"),
        Index("ix_rule_sends_notification", "notification_id"),
    )
