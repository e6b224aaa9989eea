"""The bulk accept path: up to 1,000 single sends in one call, all validated before any is stored.

Each item is a single send (:class:`app.schemas.NotificationCreate`), built into its row by the single send's
own :func:`app.accept.notification_row` and hashed by its :func:`app.accept.request_fingerprint`, so an item
replayed alone later, or a single send replayed inside a bulk call, meets the same reservation. What is
different is only how many at once: the users and templates are looked up in one query each, the
idempotency keys are reserved with one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` and the notifications
inserted in one statement, all in one transaction committed before the 202. A replayed key (same body)
answers its first notification's id; a key used with a different body fails the whole call (409 naming the
item) and nothing is stored.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import delete, select

from app.accept import IDEMPOTENCY_WINDOW, Accepted, notification_row, request_fingerprint
from app.extensions import db
from app.models import IdempotencyKey, Notification, Recipient, Template
from app.models.bulk import insert_returning, insert_rows
from app.models.types import utcnow
from app.redis_outage import enqueue_or_leave_to_reaper
from app.schemas import NotificationCreate
from app.tasks import enqueue


class UnknownNames(LookupError):
    """Items naming users or templates that do not exist (404): ``fields`` names each item."""

    def __init__(self, code: str, fields: list[dict]):
        super().__init__(code)
        self.code, self.fields = code, fields


@dataclass
class ItemConflict(Exception):
    """An item's idempotency key was used in the last 24 h (or earlier in this call) with a different body."""

    index: int
    key: str


def _lookups(items: list[NotificationCreate]) -> tuple[dict[str, int], dict[str, int]]:
    users = {item.user_id for item in items}
    recipients = dict(
        db.session.execute(select(Recipient.external_id, Recipient.id).where(Recipient.external_id.in_(users))).all()
    )
    missing = [
        {"field": f"items.{i}.user_id", "message": f"user {item.user_id!r} does not exist"}
        for i, item in enumerate(items)
        if item.user_id not in recipients
    ]
    if missing:
        raise UnknownNames("unknown_user", missing)
    keys = {item.template for item in items if item.template}
    versions = (
        dict(db.session.execute(select(Template.key, Template.current_version).where(Template.key.in_(keys))).all())
        if keys
        else {}
    )
    missing = [
        {"field": f"items.{i}.template", "message": f"no template with key {item.template!r}"}
        for i, item in enumerate(items)
        if item.template and versions.get(item.template) is None
    ]
    if missing:
        raise UnknownNames("unknown_template", missing)
    return recipients, versions


def accept_bulk(items: list[NotificationCreate], api_key_id: int) -> list[Accepted]:
    """Store every item (once per idempotency key) in one transaction; one result per item, in order."""
    recipients, versions = _lookups(items)
    now = utcnow()
    rows, reservations, repeats = [], {}, {}
    first_of_key: dict[str, tuple[int, str]] = {}
    for index, item in enumerate(items):
        key = item.idempotency_key
        fingerprint = request_fingerprint(item) if key else None
        if key in first_of_key:  # the same key twice in one call: the same send, or a conflict
            if first_of_key[key][1] != fingerprint:
                raise ItemConflict(index, key)
            repeats[index] = first_of_key[key][0]
            continue
        row = notification_row(item, recipients[item.user_id], versions.get(item.template), api_key_id, key, now)
        if key:
            first_of_key[key] = (index, fingerprint)
            reservations[key] = {
                "api_key_id": api_key_id,
                "key": key,
                "request_hash": fingerprint,
                "notification_id": row["id"],
                "created_at": now,
            }
        rows.append((index, row))
    replayed = _reserve(list(reservations.values()), api_key_id, now, first_of_key)
    fresh = [row for index, row in rows if row["idempotency_key"] not in replayed]
    insert_rows(Notification, fresh)
    db.session.commit()
    _enqueue_routing(fresh)
    done = {
        index: Accepted(replayed[row["idempotency_key"]], "accepted", True)
        if row["idempotency_key"] in replayed
        else Accepted(row["id"], "accepted", False)
        for index, row in rows
    }
    return [done[i] if i in done else Accepted(done[repeats[i]].id, "accepted", True) for i in range(len(items))]


def _reserve(rows: list[dict], api_key_id: int, now, first_of_key: dict[str, tuple[int, str]]) -> dict[str, str]:
    """Reserve the keys; returns key -> notification id for those replaying an earlier send. Raises on a conflict."""
    if not rows:
        return {}
    keys = [row["key"] for row in rows]
    db.session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.api_key_id == api_key_id,
            IdempotencyKey.key.in_(keys),
            IdempotencyKey.created_at < now - IDEMPOTENCY_WINDOW,
        )
    )
    won = {key for (key,) in insert_returning(IdempotencyKey, rows, ["api_key_id", "key"], [IdempotencyKey.key])}
    taken = [key for key in keys if key not in won]
    if not taken:
        return {}
    replayed = {}
    for key, request_hash, notification_id in db.session.execute(
        select(IdempotencyKey.key, IdempotencyKey.request_hash, IdempotencyKey.notification_id).where(
            IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key.in_(taken)
        )
    ):
        index, fingerprint = first_of_key[key]
        if request_hash != fingerprint or notification_id is None:
            db.session.rollback()
            raise ItemConflict(index, key)
        replayed[key] = notification_id
    return replayed


def _enqueue_routing(rows: list[dict]) -> None:
    """One routing job per priority and send time (never one job per notification)."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for row in rows:
        groups[(row["priority"], row["send_at"])].append(row["id"])
    for (priority, send_at), ids in groups.items():
        enqueue_or_leave_to_reaper(enqueue, "jobs.delivery.route_notifications", ids, priority=priority, at=send_at)
