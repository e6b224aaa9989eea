"""Operations, the service side: the delivery log, dead letters, health and API keys.

The console's operations views (app/console/operations.py) read a request,
call one of these and render. Every change is audited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from redis.exceptions import RedisError
from sqlalchemy import or_, select, update
from sqlalchemy.orm import selectinload

from app.api.keys import create_api_key, revoke
from app.channels.health import provider_health
from app.console.audit import Page, page_of, record_change
from app.delivery.constants import FAILED, PENDING
from app.extensions import db
from app.models import ApiKey, Delivery, DeliveryEvent, Notification, Recipient
from app.models.types import utcnow
from app.tasks import deliver_later, queue_depths

log = logging.getLogger(__name__)

RETRY_BATCH = 500


# -- delivery log ----------------------------------------------------------------------------------


def find_notifications(query: str, number: int) -> Page:
    """Notifications whose id, recipient user id or idempotency key is exactly ``query``; newest first."""
    statement = (
        select(Notification)
        .join(Recipient, Recipient.id == Notification.recipient_id)
        .where(or_(Notification.id == query, Recipient.external_id == query, Notification.idempotency_key == query))
        .options(selectinload(Notification.deliveries))
        .order_by(Notification.created_at.desc(), Notification.id.desc())
    )
    return page_of(statement, number)


@dataclass(frozen=True)
class Step:
    at: datetime | None
    label: str
    detail: str | None = None


def notification_steps(notification: Notification) -> list[Step]:
    """Accepted and routed, the notification's own milestones; deliveries carry their own events."""
    steps = [
        Step(
            notification.created_at,
            "accepted",
            f"idempotency key {notification.idempotency_key}" if notification.idempotency_key else None,
        )
    ]
    if notification.routed_at:
        steps.append(
            Step(
                notification.routed_at,
                "routed",
                f"{len(notification.deliveries)} deliveries: " + ", ".join(d.channel for d in notification.deliveries),
            )
        )
    if notification.inbox_at:
        steps.append(Step(notification.inbox_at, "in inbox"))
    if notification.read_at:
        steps.append(Step(notification.read_at, "read"))
    if notification.clicked_at:
        steps.append(Step(notification.clicked_at, "clicked", f"first click, from {notification.clicked_channel}"))
    return sorted(steps, key=lambda step: step.at)


def load_notification(notification_id: str) -> Notification | None:
    return db.session.scalar(
        select(Notification)
        .where(Notification.id == notification_id)
        .options(selectinload(Notification.deliveries).selectinload(Delivery.events))
    )


# -- dead letters ----------------------------------------------------------------------------------


def _dead(statement):
    return statement.where(Delivery.dead_lettered_at.is_not(None), Delivery.status == FAILED)


def dead_letters(number: int) -> Page:
    statement = _dead(
        select(Delivery)
        .options(selectinload(Delivery.notification))
        .order_by(Delivery.dead_lettered_at.desc(), Delivery.id.desc())
    )
    return page_of(statement, number)


def _snapshot(status: str, dead_at, error_code, attempts) -> dict:
    return {"status": status, "dead_lettered_at": dead_at, "error_code": error_code, "attempts": attempts}


def _revive(ids: list[int], actor, now: datetime) -> list[tuple[int, str]]:
    """FAILED + dead-lettered -> PENDING for these ids; returns the (id, priority) pairs this call won.

    The WHERE repeats the dead-letter condition, so two staff clicking retry at once send once.
    """
    rows = db.session.execute(
        _dead(
            select(
                Delivery.id, Delivery.dead_lettered_at, Delivery.error_code, Delivery.attempts, Notification.priority
            )
            .join(Notification)
            .where(Delivery.id.in_(ids))
        )
    ).all()
    won = set(
        db.session.scalars(
            _dead(update(Delivery).where(Delivery.id.in_([r.id for r in rows])))
            .values(status=PENDING, dead_lettered_at=None, not_before=None, updated_at=now)
            .returning(Delivery.id),
            execution_options={"synchronize_session": False},
        )
    )
    detail = f"retried by {actor.email}"
    revived = []
    for row in rows:
        if row.id not in won:
            continue
        db.session.add(DeliveryEvent(delivery_id=row.id, status=PENDING, detail=detail, created_at=now))
        record_change(
            actor,
            "delivery.retry",
            "delivery",
            row.id,
            _snapshot(FAILED, row.dead_lettered_at, row.error_code, row.attempts),
            _snapshot(PENDING, None, row.error_code, row.attempts),
        )
        revived.append((row.id, row.priority))
    db.session.commit()
    return revived


def _dispatch(revived: list[tuple[int, str]]) -> None:
    """Hand revived deliveries to the pipeline, which re-checks their origin (a cancelled campaign sends nothing)."""
    for delivery_id, priority in revived:
        deliver_later([delivery_id], priority)


def retry_dead_letter(delivery_id: int, actor) -> bool:
    """Send a dead letter again: PENDING, attempts kept (so it gets one more try), a dispatch job queued."""
    revived = _revive([delivery_id], actor, utcnow())
    _dispatch(revived)
    return bool(revived)


def retry_all_dead_letters(actor) -> int:
    """Retry every dead letter there is now, in batches; ones that fail again meanwhile are not re-picked."""
    now, after_id, total = utcnow(), 0, 0
    while True:
        ids = list(
            db.session.scalars(
                _dead(select(Delivery.id))
                .where(Delivery.id > after_id, Delivery.dead_lettered_at <= now)
                .order_by(Delivery.id)
                .limit(RETRY_BATCH)
            )
        )
        if not ids:
            return total
        revived = _revive(ids, actor, now)
        _dispatch(revived)
        total += len(revived)
        after_id = ids[-1]


def discard_dead_letter(delivery_id: int, actor) -> bool:
    """Take a dead letter off the list for good: it stays FAILED, with who discarded it as the reason."""
    now = utcnow()
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None:
        return False
    before = _snapshot(delivery.status, delivery.dead_lettered_at, delivery.error_code, delivery.attempts)
    reason = f"discarded by {actor.email}"
    result = db.session.execute(
        _dead(update(Delivery).where(Delivery.id == delivery_id)).values(
            dead_lettered_at=None, reason=reason[:255], updated_at=now
        ),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount != 1:
        db.session.rollback()
        return False
    db.session.add(DeliveryEvent(delivery_id=delivery_id, status=FAILED, detail=reason, created_at=now))
    record_change(
        actor,
        "delivery.discard",
        "delivery",
        delivery_id,
        before,
        {**before, "dead_lettered_at": None, "reason": reason},
    )
    db.session.commit()
    return True


# -- health ----------------------------------------------------------------------------------------


def queues_or_none() -> dict | None:
    try:
        return queue_depths()
    except RedisError:
        log.warning("operations: Redis did not answer; queue depths left out", exc_info=True)
        return None


def providers_or_none() -> list[dict] | None:
    """Provider circuits and error rates, when Redis answers."""
    try:
        return provider_health()
    except RedisError:
        log.warning("operations: provider health unavailable", exc_info=True)
        return None


# -- API keys --------------------------------------------------------------------------------------


def _key_snapshot(api_key: ApiKey) -> dict:
    return {
        "name": api_key.name,
        "prefix": api_key.prefix,
        "rate_limit": api_key.rate_limit,
        "scopes": api_key.scopes,
        "revoked_at": api_key.revoked_at,
    }


def create_key(name: str, rate_limit: str, actor, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create a key and audit it. ``create_api_key`` commits on its own, so the entry follows at once."""
    api_key, plaintext = create_api_key(name, rate_limit, scopes)
    record_change(actor, "api_key.create", "api_key", api_key.id, None, _key_snapshot(api_key))
    db.session.commit()
    return api_key, plaintext


def revoke_key(api_key: ApiKey, actor) -> bool:
    """Revoke and audit; like creation, ``revoke`` commits on its own and the entry follows at once."""
    if api_key.revoked_at is not None:
        return False
    before = _key_snapshot(api_key)
    revoke(api_key)
    record_change(actor, "api_key.revoke", "api_key", api_key.id, before, _key_snapshot(api_key))
    db.session.commit()
    return True


def change_rate_limit(api_key: ApiKey, rate_limit: str, actor) -> None:
    """Takes effect within the key cache's lifetime (seconds) in every web process."""
    before = _key_snapshot(api_key)
    api_key.rate_limit = rate_limit
    record_change(actor, "api_key.rate_limit", "api_key", api_key.id, before, _key_snapshot(api_key))
    db.session.commit()


def api_keys(number: int) -> Page:
    return page_of(
        select(ApiKey).order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc(), ApiKey.id.desc()), number
    )
