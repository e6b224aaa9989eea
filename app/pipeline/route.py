"""Routing an API notification: one delivery per requested channel (idempotently), then hand them to the pipeline.

In-app is delivered inline (it is a database row); every external channel
(email, SMS, push, web push) goes in a job of its own, so a hanging provider
holds at most its channel's worker slots, never the other channels of the
same notification. Campaigns and rules route their batches themselves, with
the same :func:`app.pipeline.facts.route_people`.
"""

from __future__ import annotations

from sqlalchemy import select

from app.channels import channel_class, send_rank
from app.delivery import routing
from app.delivery.constants import PENDING, SUPPRESSED
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Notification
from app.models.bulk import insert_ignoring_conflicts
from app.models.types import utcnow
from app.pipeline.deliver import deliver
from app.pipeline.facts import load_people, record_marketing_sends, route_people
from app.tasks import deliver_later


def _event_detail(delivery: Delivery) -> str:
    if delivery.status == SUPPRESSED:
        return delivery.reason
    if delivery.not_before:
        return f"deferred until {delivery.not_before.isoformat()} ({delivery.reason})"
    return "routed"


def route_notification(notification_id: str) -> None:
    """Create the notification's deliveries (a re-run creates none twice), then deliver what may go now."""
    now = utcnow()
    notification = db.session.get(Notification, notification_id)
    if notification is None:
        return  # erased with its recipient before we got to it
    person = load_people([notification.recipient_id])[notification.recipient_id]
    note = routing.NotificationFacts(
        notification.type, notification.category, notification.priority, tuple(notification.channels)
    )
    decisions = route_people(note, [person], now)[person.id]
    rows = [
        {
            "notification_id": notification.id,
            "channel": d.channel,
            "status": SUPPRESSED if d.action == routing.SUPPRESS else PENDING,
            "reason": d.reason,
            "not_before": d.not_before,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for d in decisions
    ]
    if insert_ignoring_conflicts(Delivery, rows, ["notification_id", "channel"]):
        created = db.session.scalars(
            select(Delivery).where(Delivery.notification_id == notification.id, ~Delivery.events.any())
        ).all()
        for delivery in created:
            db.session.add(
                DeliveryEvent(
                    delivery_id=delivery.id, status=delivery.status, detail=_event_detail(delivery), created_at=now
                )
            )
    notification.status = "routed"
    notification.routed_at = notification.routed_at or now
    priority = notification.priority
    db.session.commit()
    if note.type == "marketing" and any(d.action != routing.SUPPRESS for d in decisions):
        record_marketing_sends({person.id: notification_id}, now)

    pending = db.session.execute(
        select(Delivery.id, Delivery.channel, Delivery.not_before).where(
            Delivery.notification_id == notification_id, Delivery.status == PENDING
        )
    ).all()
    db.session.commit()
    inline = []
    for delivery_id, channel, not_before in sorted(pending, key=lambda d: send_rank(d.channel)):
        adapter = channel_class(channel)
        if not_before and not_before > now:
            deliver_later([delivery_id], priority, not_before)
        elif adapter is None or adapter.external:
            deliver_later([delivery_id], priority)
        else:
            inline.append(delivery_id)
    if inline:
        deliver(inline, now)


def route_notifications(notification_ids: list[str]) -> None:
    """A bulk call's notifications in one job (RQ costs ~20 Redis round trips per job: never one job each)."""
    for notification_id in notification_ids:
        route_notification(notification_id)
