"""The accept path of one notification: reserve the idempotency key, store, enqueue.

"Accepted" means durable: the notification row and its idempotency key are
committed in one transaction before the 202 goes out. If the process dies
between that commit and the enqueue, or Redis is down at that moment, the
reaper (jobs/maintenance.py) finds the row still ``accepted`` and enqueues it.
With the database down nothing is stored and the caller gets a 503 (app/errors.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Executable, bindparam, delete, func, insert, literal, select
from sqlalchemy.exc import IntegrityError

from app.delivery.priority import effective_priority
from app.extensions import db
from app.models import IdempotencyKey, Notification, Recipient, Template
from app.models.notifications import new_notification_id
from app.models.outbound_webhooks import WebhookEndpoint
from app.models.types import utcnow
from app.outbound_webhooks import events as webhook_events
from app.outbound_webhooks.outbox import emit
from app.redis_outage import enqueue_or_leave_to_reaper
from app.schemas import NotificationCreate
from app.tasks import enqueue

IDEMPOTENCY_WINDOW = timedelta(hours=24)
_INSERT_KEY = insert(IdempotencyKey.__table__)
# The recipient is looked up inside the insert (no round trip of its own): an unknown user id leaves
# recipient_id NULL, which the NOT NULL column refuses. The insert also tells whether any outbound webhook
# endpoint is enabled: with none (most installations) the outbox has nothing to write and is not asked.
_NEW_NOTIFICATION = insert(Notification.__table__).values(
    recipient_id=select(Recipient.id).where(Recipient.external_id == bindparam("user_id")).scalar_subquery()
)
_ENABLED_ENDPOINTS = select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True))
_INSERT_NOTIFICATION = _NEW_NOTIFICATION.returning(_ENABLED_ENDPOINTS.scalar_subquery())


@cache
def _insert_notification_and_key(columns: tuple[str, ...]) -> Executable:
    """PostgreSQL: the notification (its ``columns`` as parameters) and its idempotency key reservation in ONE
    statement (data-modifying CTEs), a round trip and a statement fewer per keyed send. A key already held makes
    the whole statement fail on the unique pair, so nothing is written, as when the two were separate statements.
    """
    table, keys = Notification.__table__, IdempotencyKey.__table__
    values = {name: bindparam(name, type_=table.c[name].type) for name in columns}
    # An insert inside a CTE gets no column defaults from SQLAlchemy: the constant ones travel as literals here.
    values.update(
        {
            column.name: literal(column.default.arg, column.type)
            for column in table.columns
            if column.name not in values and column.default is not None and column.default.is_scalar
        }
    )
    stored = _NEW_NOTIFICATION.values(values).returning(table.c.id).cte("stored")
    reservation = [bindparam(f"reservation_{name}", type_=keys.c[name].type) for name in _RESERVATION_COLUMNS]
    reserved = _INSERT_KEY.from_select(
        [*_RESERVATION_COLUMNS, "notification_id"], select(*reservation, stored.c.id)
    ).cte("reserved")
    return _ENABLED_ENDPOINTS.add_cte(stored, reserved)


_RESERVATION_COLUMNS = ("api_key_id", "key", "request_hash", "created_at")


class UnknownRecipient(LookupError):
    pass


class UnknownTemplate(LookupError):
    pass


class IdempotencyConflict(Exception):
    """The key was used within 24 h for a different request body."""


@dataclass(frozen=True)
class Accepted:
    id: str | None
    status: str
    replayed: bool
    run_id: int | None = None  # a send to a topic or an audience (app/campaigns/runs.py)
    workflow_run_id: int | None = None  # a workflow trigger (app/workflows/trigger.py)


def request_fingerprint(payload) -> str:
    """Hash of the request's meaning (not its bytes): key order and the key's own spelling don't matter.

    A send to one user hashes as it did before topics existed (``topic``/``exclude`` left out when absent),
    so keys reserved then still replay.
    """
    body = payload.model_dump(mode="json", exclude={"idempotency_key"})
    if body.get("topic", 0) is None:
        body.pop("topic")
        body.pop("exclude", None)
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _replay(api_key_id: int, key: str, fingerprint: str) -> Accepted | None:
    reservation = db.session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key)
    )
    if reservation is None:
        return None
    if reservation.created_at < utcnow() - IDEMPOTENCY_WINDOW:
        db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == reservation.id))
        db.session.commit()
        return None
    if reservation.request_hash != fingerprint:
        raise IdempotencyConflict(key)
    return Accepted(
        reservation.notification_id,
        "accepted",
        replayed=True,
        run_id=reservation.run_id,
        workflow_run_id=reservation.workflow_run_id,
    )


def accept_notification(payload: NotificationCreate, api_key_id: int | None, idempotency_key: str | None) -> Accepted:
    """Store the notification (once per idempotency key) and return what the caller is told.

    No read-then-write: the notification and its key reservation are inserted in
    one transaction and the unique (api key, idempotency key) pair decides. The
    loser of a race, or a replay, reads the winner's reservation instead.
    """
    fingerprint = request_fingerprint(payload)
    template_version = None
    if payload.template:
        template_version = db.session.scalar(select(Template.current_version).where(Template.key == payload.template))
        if template_version is None:
            raise UnknownTemplate(payload.template)

    now = utcnow()
    row = notification_row(payload, None, template_version, api_key_id, idempotency_key, now)
    del row["recipient_id"]  # the insert finds it by user_id
    notification_id, priority = row["id"], row["priority"]

    def create(reservation: dict | None) -> dict:
        pointer = {"notification_id": notification_id}
        if _insert_notification(row, payload.user_id, reservation, pointer):
            emit(webhook_events.accepted(row, payload.user_id))
        return pointer

    accepted = create_once(create, api_key_id, idempotency_key, fingerprint, now, reserves_key=True)
    if accepted.replayed:
        return accepted
    enqueue_or_leave_to_reaper(
        enqueue, "jobs.delivery.route_notification", notification_id, priority=priority, at=payload.send_at
    )
    return accepted


def create_once(
    create: Callable[..., dict],
    api_key_id: int | None,
    key: str | None,
    fingerprint: str,
    now: datetime,
    *,
    reserves_key: bool = False,
) -> Accepted:
    """Run ``create`` and reserve the idempotency ``key`` in one transaction: the one path every accepted request
    (a send, a run to a topic or audience, a workflow trigger) takes.

    ``create`` inserts what the request makes and returns what the reservation points at (``notification_id``,
    ``run_id`` or ``workflow_run_id``). With ``reserves_key`` it is called with the reservation row (None without
    a key) and stores it itself, through :func:`reserve`, so a send can write both in one statement. Returns the
    answer once committed, or the first answer (``replayed``) when the same request already holds the key; a
    different request holding it raises IdempotencyConflict.
    """
    reservation = (
        {"api_key_id": api_key_id, "key": key, "request_hash": fingerprint, "created_at": now} if key else None
    )
    for _attempt in range(2):
        try:
            if reserves_key:
                pointer = create(reservation)
            else:
                pointer = create()
                if reservation:
                    reserve(reservation, pointer)
            db.session.commit()
            return Accepted(
                pointer.get("notification_id"),
                "accepted",
                replayed=False,
                run_id=pointer.get("run_id"),
                workflow_run_id=pointer.get("workflow_run_id"),
            )
        except IntegrityError:
            db.session.rollback()
            replay = _replay(api_key_id, key, fingerprint) if key else None
            if replay is not None:
                return replay
            # The reservation had expired and was just removed: claim the key again.
    raise RuntimeError("idempotency key could not be reserved")


def reserve(reservation: dict, pointer: dict) -> None:
    """Insert the key's reservation row, pointing at what the request made."""
    # A constant Core statement (the row travels as parameters): compiled once per process.
    db.session.connection().execute(_INSERT_KEY, {**reservation, **pointer})


def _insert_notification(row: dict, user_id: str, reservation: dict | None, pointer: dict) -> int:
    """Insert the row for the recipient known as ``user_id`` and the key's ``reservation`` (if any); UnknownRecipient
    (nothing written) if no recipient has that id.

    Returns how many outbound webhook endpoints are enabled, as the insert's own snapshot saw them.
    """
    connection = db.session.connection()
    together = reservation is not None and connection.dialect.name == "postgresql"
    try:
        if together:
            statement = _insert_notification_and_key(tuple(row))
            reserved_as = {f"reservation_{name}": value for name, value in reservation.items()}
            return connection.execute(statement, {**row, "user_id": user_id, **reserved_as}).scalar_one()
        enabled = connection.execute(_INSERT_NOTIFICATION, {**row, "user_id": user_id}).scalar_one()
    except IntegrityError:
        db.session.rollback()
        if db.session.scalar(select(Recipient.id).where(Recipient.external_id == user_id)) is None:
            raise UnknownRecipient(user_id) from None
        raise  # the key is held: create_once replays or refuses
    if reservation is not None:
        reserve(reservation, pointer)
    return enabled


def notification_row(
    payload: NotificationCreate,
    recipient_id: int | None,
    template_version: int | None,
    api_key_id: int | None,
    idempotency_key: str | None,
    now,
) -> dict:
    """The notification row of one accepted send: the single send and every bulk item build it here."""
    return {
        "id": new_notification_id(),
        "recipient_id": recipient_id,
        "type": payload.type,
        "category": payload.category,
        "priority": effective_priority(payload.type, payload.priority),
        "template_key": payload.template,
        "template_version": template_version,
        "title": payload.title,
        "body": payload.body,
        "data": payload.data,
        "channels": list(payload.channels),
        "collapse_key": payload.collapse_key,
        "idempotency_key": idempotency_key,
        "api_key_id": api_key_id,
        "send_at": payload.send_at,
        "status": "accepted",
        "created_at": now,
    }
