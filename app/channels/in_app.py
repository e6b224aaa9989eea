"""In-app: the inbox row is the message; a realtime event tells open pages to refresh.

This is the one place in-app is sent, for a chunk of any size: one
conditional UPDATE of the deliveries (PENDING -> DELIVERED, RETURNING the
winners), one of their notifications (into the inbox), their events, then the
realtime publishes pipelined in one Redis round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update

from app.channels.base import Channel, Message, Result, register
from app.delivery.constants import DELIVERED, SENDING
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Notification
from app.models.bulk import insert_rows, update_by_id
from app.outbound_webhooks import events as webhook_events
from app.outbound_webhooks.outbox import emit
from app.pipeline.claims import due
from app.realtime.publish import publish_to_user
from app.redis_client import get_redis


@dataclass(frozen=True)
class InboxEntry:
    delivery_id: int
    notification_id: str
    recipient_id: int
    category: str
    title: str | None
    # Content rendered for a notification stored without it (an API send by template): written into the row.
    rendered: dict[str, str] | None = None


@register("in_app")
class InAppChannel(Channel):
    label = "In-app"
    order, send_order, preference_column = 0, 0, 0  # first: it is instant and what an open page is waiting for
    external = False  # a database row and a Redis publish: runs inline, in bulk
    is_inbox = True
    content_fields = ("title", "body")
    field_limits = {"title": 500, "body": 10_000}

    def send(self, message: Message) -> Result:
        raise NotImplementedError("in-app is sent in bulk by the pipeline: InAppChannel.send_many")

    def send_many(self, entries: list[InboxEntry], now: datetime) -> set[int]:
        """Put the due entries in their recipients' inboxes; returns the delivery ids this call delivered."""
        if not entries:
            return set()
        won = _claim_delivered(entries, now)
        if not won:
            db.session.commit()
            return won
        landed = [e for e in entries if e.delivery_id in won]
        _write_inbox(landed, now)
        emit(webhook_events.delivered_to_inbox(self.name, [(e.notification_id, e.recipient_id) for e in landed]))
        db.session.commit()
        _announce(landed)
        return won


def _claim_delivered(entries: list[InboxEntry], now: datetime) -> set[int]:
    """Move the due deliveries straight to DELIVERED in one conditional UPDATE; the ids it moved."""
    return set(
        db.session.execute(
            update(Delivery)
            .where(Delivery.id.in_([e.delivery_id for e in entries]), due(now))
            .values(
                status=DELIVERED,
                provider="herald",
                attempts=Delivery.attempts + 1,
                claimed_at=now,
                dispatched_at=now,
                delivered_at=now,
                last_error=None,
                error_code=None,
                updated_at=now,
            )
            .returning(Delivery.id),
            execution_options={"synchronize_session": False},
        ).scalars()
    )


def _write_inbox(landed: list[InboxEntry], now: datetime) -> None:
    """Show the delivered notifications in the inbox, with any rendered content, and record their events."""
    # Idempotent: a re-driven delivery keeps the first inbox time.
    db.session.execute(
        update(Notification)
        .where(Notification.id.in_([e.notification_id for e in landed]), Notification.inbox_at.is_(None))
        .values(inbox_at=now),
        execution_options={"synchronize_session": False},
    )
    update_by_id(
        Notification,
        [
            {"id": e.notification_id, "title": e.rendered.get("title"), "body": e.rendered.get("body")}
            for e in landed
            if e.rendered
        ],
    )
    # The same transitions as any send (claimed, then delivered), written in one statement.
    insert_rows(
        DeliveryEvent,
        [
            {"delivery_id": e.delivery_id, "status": status, "detail": detail, "created_at": now}
            for e in landed
            for status, detail in ((SENDING, None), (DELIVERED, "inbox"))
        ],
    )


def _announce(landed: list[InboxEntry]) -> None:
    """Tell the recipients' open pages, all publishes pipelined in one Redis round trip."""
    pipe = get_redis().pipeline(transaction=False)
    for e in landed:
        title = e.rendered.get("title") if e.rendered else e.title
        publish_to_user(
            e.recipient_id,
            "notification",
            {"id": e.notification_id, "title": title, "category": e.category},
            event_id=e.notification_id,
            pipeline=pipe,
        )
    pipe.execute()
