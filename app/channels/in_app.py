"""In-app: the inbox row is the message; a realtime event tells open pages to refresh."""
from __future__ import annotations

from sqlalchemy import update

from app.channels.base import Channel, Message, Outcome, Result, register
from app.extensions import db
from app.models import Notification
from app.models.types import utcnow
from app.realtime.publish import publish_to_user


@register("in_app")
class InAppChannel(Channel):
    external = False  # a database row and a Redis publish: runs inline while routing

    def send(self, message: Message) -> Result:
        # Idempotent: a re-driven delivery keeps the first inbox time.
        db.session.execute(
            update(Notification)
            .where(Notification.id == message.notification_id, Notification.inbox_at.is_(None))
            .values(inbox_at=utcnow())
        )
        db.session.commit()
        publish_to_user(
            message.recipient_id,
            "notification",
            {"id": message.notification_id, "title": message.content.get("title"), "category": message.category},
            event_id=message.notification_id,
        )
        return Result(Outcome.DELIVERED, provider="herald")
