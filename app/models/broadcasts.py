"""Broadcasts: an in-app-only campaign to a very large audience, stored once and fanned out on read."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import BigId, Json, UTCDateTime, utcnow


class Broadcast(db.Model):
    """One row for the whole audience (see app/broadcasts/). The campaign holds the content and the status that
    shows or hides it; the audience filter is snapshotted here and evaluated against each reader when they read."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), unique=True)
    audience_filter: Mapped[dict] = mapped_column(Json)
    # What routing needs to apply the reader's opt-outs, copied from the campaign at launch.
    type: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16))
    # Every targeted inbox shows it at this instant; recipients created after it are not in the audience.
    launched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The audience size, counted once after launch (None until then).
    targeted: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_broadcasts_launched", "launched_at"),)
