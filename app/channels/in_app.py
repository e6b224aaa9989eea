"""In-app: the inbox row is the message; a realtime event tells open pages to refresh.

This is the one place in-app is sent, for a chunk of any size: one
conditional UPDATE of the deliveries (PENDING -> DELIVERED, RETURNING the
winners), one of their notifications (into the inbox), their events, then the
realtime events, all published by one Redis command. On PostgreSQL the three
writes are one statement (data-modifying CTEs fed by the claim's RETURNING):
one round trip and one plan per chunk, and only the winners are written.

A producer that decides to send in-app in the very transaction that creates
the rows (a daily rule's batch, whose send window was just checked) lands them
as it inserts them instead (:func:`land_on_insert`): the INSERT is the claim, since
``ON CONFLICT DO NOTHING`` on (notification, channel) lets only one run write
a row, and the rows are written once instead of inserted and then updated.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import insert, literal, select, update

from app.channels.base import Channel, Message, Result, register
from app.delivery.constants import DELIVERED, PENDING, SENDING
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Notification
from app.models.bulk import among, insert_rows, is_postgresql, update_by_id
from app.outbound_webhooks import events as webhook_events
from app.outbound_webhooks.outbox import emit, subscribed_types
from app.pipeline.claims import due
from app.realtime.publish import publish_to_users


class InboxEntry(NamedTuple):
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
        if is_postgresql():
            won = _land_in_one_statement(entries, now)
        else:
            won = _claim_delivered(entries, now)
        if not won:
            db.session.commit()
            return won
        landed = [e for e in entries if e.delivery_id in won]
        if not is_postgresql():
            _write_inbox(landed, now)
        _write_rendered(landed)
        record_landing(landed)
        db.session.commit()
        announce(landed)
        return won


def land_on_insert(notifications: list[dict], deliveries: list[dict], at: datetime) -> None:
    """Turn a producer's new in-app rows that routing let go now (PENDING, not deferred) into rows landed at
    ``at`` (:func:`landed_row`), their notifications into the inbox; the producer then inserts them, writes their
    :func:`landing_event`, calls :func:`record_landing` for the rows its INSERT created, commits and
    announces them (:func:`announce`). Every notification and delivery row must have the ``inbox_at`` and landing keys."""
    by_id = {n["id"]: n for n in notifications}
    for index, row in enumerate(deliveries):
        if row["channel"] == InAppChannel.name and row["status"] == PENDING and row["not_before"] is None:
            deliveries[index] = landed_row(row, at)
            by_id[row["notification_id"]]["inbox_at"] = at


def landed_entries(created, notifications: list[dict]) -> list[InboxEntry]:
    """The rows an INSERT created already DELIVERED (``created``: its RETURNING, with id, notification_id and
    status), as the inbox announces them; ``notifications``: the inserted notification rows."""
    by_id = {n["id"]: n for n in notifications}
    entries = []
    for d in created:
        note = by_id.get(d.notification_id)
        if d.status == DELIVERED and note is not None:  # (a notification an earlier run wrote keeps its own rows)
            entries.append(InboxEntry(d.id, d.notification_id, note["recipient_id"], note["category"], note["title"]))
    return entries


def record_landing(landed: list[InboxEntry]) -> None:
    """What a landing writes besides its rows, in its transaction: the webhook facts, in the outbox."""
    if landed and webhook_events.DELIVERY_DELIVERED in subscribed_types():  # the facts are built only for a listener
        emit(
            webhook_events.delivered_to_inbox(InAppChannel.name, [(e.notification_id, e.recipient_id) for e in landed])
        )


def landed_row(row: dict, now: datetime) -> dict:
    """A new delivery row as it is inserted already DELIVERED (the INSERT is its claim: see the module)."""
    return {
        **row,
        "status": DELIVERED,
        "provider": "herald",
        "attempts": 1,
        "claimed_at": now,
        "dispatched_at": now,
        "delivered_at": now,
        "updated_at": now,
    }


def landing_event(delivery_id: int, at: datetime, producer: str | None = None) -> dict:
    """The one event of a row inserted already delivered: it was never PENDING nor SENDING, its INSERT claimed it."""
    return {
        "delivery_id": delivery_id,
        "status": DELIVERED,
        "detail": f"inbox; {producer}" if producer else "inbox",
        "created_at": at,
    }


def _claim(entries: list[InboxEntry], now: datetime):
    """The conditional UPDATE that moves the due deliveries straight to DELIVERED (one winner per delivery)."""
    return (
        update(Delivery)
        .where(among(Delivery.id, [e.delivery_id for e in entries]), due(now))
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
    )


def _claim_delivered(entries: list[InboxEntry], now: datetime) -> set[int]:
    """The claim alone; the ids it moved (SQLite: the inbox and events follow in statements of their own)."""
    return set(
        db.session.execute(
            _claim(entries, now).returning(Delivery.id), execution_options={"synchronize_session": False}
        ).scalars()
    )


def _land_in_one_statement(entries: list[InboxEntry], now: datetime) -> set[int]:
    """PostgreSQL: the claim, the inbox time of the winners' notifications and their two events in ONE statement.

    Every part reads the claim's RETURNING, so only this call's winners get an inbox time and events.
    """
    won = _claim(entries, now).returning(Delivery.id, Delivery.notification_id).cte("won")
    inbox = (
        update(Notification)
        .where(Notification.id == won.c.notification_id, Notification.inbox_at.is_(None))
        .values(inbox_at=now)
        .cte("inbox")
    )
    columns = ["delivery_id", "status", "detail", "created_at"]
    transitions = select(won.c.id, literal(SENDING), literal(None, DeliveryEvent.detail.type), literal(now)).union_all(
        select(won.c.id, literal(DELIVERED), literal("inbox"), literal(now))
    )
    events = insert(DeliveryEvent).from_select(columns, transitions).cte("events")
    statement = select(won.c.id).add_cte(inbox, events)
    return set(db.session.execute(statement, execution_options={"synchronize_session": False}).scalars())


def _write_inbox(landed: list[InboxEntry], now: datetime) -> None:
    """Show the delivered notifications in the inbox and record their events (SQLite)."""
    # Idempotent: a re-driven delivery keeps the first inbox time.
    db.session.execute(
        update(Notification)
        .where(among(Notification.id, [e.notification_id for e in landed]), Notification.inbox_at.is_(None))
        .values(inbox_at=now),
        execution_options={"synchronize_session": False},
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


def _write_rendered(landed: list[InboxEntry]) -> None:
    """Content rendered at send time (an API send by template) is written into its notification."""
    update_by_id(
        Notification,
        [
            {"id": e.notification_id, "title": e.rendered.get("title"), "body": e.rendered.get("body")}
            for e in landed
            if e.rendered
        ],
    )


def announce(landed: list[InboxEntry]) -> None:
    """Tell the recipients' open pages, all in one Redis command."""
    publish_to_users(
        "notification",
        [
            (
                e.recipient_id,
                {
                    "id": e.notification_id,
                    "title": e.rendered.get("title") if e.rendered else e.title,
                    "category": e.category,
                },
                e.notification_id,
            )
            for e in landed
        ],
    )
