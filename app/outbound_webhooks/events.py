"""The event types an endpoint can subscribe to, and the envelope every message carries (no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from app.delivery.constants import DELIVERED, DISPATCHED, FAILED

NOTIFICATION_ACCEPTED = "notification.accepted"
DELIVERY_SENT = "delivery.sent"
DELIVERY_DELIVERED = "delivery.delivered"
DELIVERY_FAILED = "delivery.failed"
NOTIFICATION_READ = "notification.read"
NOTIFICATION_CLICKED = "notification.clicked"
RECIPIENT_UNSUBSCRIBED = "recipient.unsubscribed"

EVENT_TYPES = {
    NOTIFICATION_ACCEPTED: "the API stored a notification (before routing)",
    DELIVERY_SENT: "a provider took a delivery (email, SMS, push, web push)",
    DELIVERY_DELIVERED: "a delivery reached the user (an inbox entry, or a provider's receipt)",
    DELIVERY_FAILED: "a delivery gave up (after its retries, or at once for a permanent error)",
    NOTIFICATION_READ: "the user read a notification in the inbox",
    NOTIFICATION_CLICKED: "the user followed a notification's link (the first click)",
    RECIPIENT_UNSUBSCRIBED: "the user unsubscribed from a category by a mail's one-click link",
}
ALL_EVENT_TYPES = tuple(EVENT_TYPES)


@dataclass(frozen=True)
class Fact:
    """One event to tell endpoints about. ``recipient_id`` is turned into ``data["user_id"]`` when that is absent."""

    type: str
    data: dict = field(default_factory=dict)
    recipient_id: int | None = None


def envelope(event_type: str, at: datetime, data: dict) -> dict:
    """The body of a message, in the Standard Webhooks shape: ``type``, ``timestamp``, ``data``."""
    return {"type": event_type, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data}


def ordering_key(data: dict, msg_id: str) -> str:
    """Messages about one user go to an endpoint in order; one without a user is ordered by nothing."""
    user_id = data.get("user_id")
    return f"user:{user_id}"[:255] if user_id else f"msg:{msg_id}"


# -- the facts each site records, as events (one call per site) ------------------------------------

# Delivery statuses (app/delivery/constants.py) that are news to a host product.
_DELIVERY_EVENTS = {DISPATCHED: DELIVERY_SENT, DELIVERED: DELIVERY_DELIVERED, FAILED: DELIVERY_FAILED}


def accepted(row: dict, user_id: str) -> list[Fact]:
    """The notification row the accept path inserts."""
    return [
        Fact(
            NOTIFICATION_ACCEPTED,
            {
                "user_id": user_id,
                "notification_id": row["id"],
                "type": row["type"],
                "category": row["category"],
                "priority": row["priority"],
                "channels": list(row["channels"] or []),
                "origin": row.get("origin") or "api",
            },
        )
    ]


def delivery_outcome(
    status: str,
    notification_id: str,
    channel: str,
    user_id: str | None = None,
    recipient_id: int | None = None,
    **detail,
) -> list[Fact]:
    """A delivery that reached a status worth telling (sent, delivered, failed); none for any other status."""
    event_type = _DELIVERY_EVENTS.get(status)
    if event_type is None:
        return []
    data = {
        "notification_id": notification_id,
        "channel": channel,
        "status": status.lower(),
        **{name: value for name, value in detail.items() if value is not None},
    }
    if user_id is not None:
        data = {"user_id": user_id, **data}
    return [Fact(event_type, data, recipient_id)]


def delivery_outcomes(results: list[tuple[object, str, object]]) -> list[Fact]:
    """``(pipeline item, status it ended in, provider Result)`` for a group the pipeline recorded."""
    facts = []
    for item, status, result in results:
        facts += delivery_outcome(
            status,
            item.notification.id,
            item.channel,
            item.person.external_id,
            provider=getattr(result, "provider", None),
            error_code=getattr(result, "error_code", None),
        )
    return facts


def delivered_to_inbox(channel: str, landed: list[tuple[str, int]]) -> list[Fact]:
    """``(notification id, recipient id)`` of in-app deliveries that reached their inbox."""
    return [
        fact
        for notification_id, recipient_id in landed
        for fact in delivery_outcome(DELIVERED, notification_id, channel, recipient_id=recipient_id, provider="herald")
    ]


def read(recipient_id: int, notification_ids: list[str]) -> list[Fact]:
    return [
        Fact(NOTIFICATION_READ, {"notification_id": notification_id}, recipient_id)
        for notification_id in notification_ids
    ]


def clicked(recipient_id: int, notification_id: str, channel: str) -> list[Fact]:
    return [Fact(NOTIFICATION_CLICKED, {"notification_id": notification_id, "channel": channel}, recipient_id)]


def unsubscribed(
    user_id: str, channel: str | None, category: str | None, source: str = "unsubscribe_link"
) -> list[Fact]:
    """A recipient turned something off: one (channel, category) switch, or everything (``None`` for both: hard stop).

    ``source`` says where: ``unsubscribe_link``, ``preferences`` (inbox page or API), ``console`` (staff) or ``sms_stop``.
    """
    return [
        Fact(RECIPIENT_UNSUBSCRIBED, {"user_id": user_id, "channel": channel, "category": category, "source": source})
    ]


def switched_off(
    before: dict[tuple[str, str], bool], after: dict[tuple[str, str], bool], default: Callable[[str, str], bool]
) -> list[tuple[str, str]]:
    """The (channel, category) switches that were on (set, or ``default`` when unset) and are now off, in order."""
    return sorted(switch for switch, enabled in after.items() if not enabled and before.get(switch, default(*switch)))
