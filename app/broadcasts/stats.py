"""What the console shows of a campaign that became a broadcast: it has no batches and few rows, so its
counters come from the broadcast row and the readers' copies, not from the fan-out's progress hash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from app.extensions import db
from app.models import Broadcast, Notification


@dataclass(frozen=True)
class BroadcastView:
    launched_at: datetime
    targeted: int | None  # the audience at launch; None while it is being counted
    seen: int  # readers with a copy: they read, opened or archived it
    read: int
    clicked: int


def for_campaign(campaign_id: int) -> BroadcastView | None:
    """None when the campaign is not a broadcast (two small queries either way)."""
    broadcast = db.session.scalar(select(Broadcast).where(Broadcast.campaign_id == campaign_id))
    if broadcast is None:
        return None
    seen, read, clicked = db.session.execute(
        select(func.count(), func.count(Notification.read_at), func.count(Notification.clicked_at)).where(
            Notification.campaign_id == campaign_id
        )
    ).one()
    return BroadcastView(broadcast.launched_at, broadcast.targeted, int(seen), int(read), int(clicked))
