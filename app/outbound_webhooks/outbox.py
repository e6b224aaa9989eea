"""The transactional outbox: a fact's writer calls :func:`emit` before its own commit.

The messages are rows inserted in the caller's transaction, so they exist
exactly when the fact does: a rolled-back fact leaves no message, and a process
that dies right after the commit leaves its messages for the dispatcher. Only
once the transaction commits is the dispatcher nudged (one Redis round trip per
commit that wrote messages; a missed nudge is made up by the scheduler's tick).
With no endpoint subscribed to an event type, :func:`emit` costs one small query.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from redis.exceptions import RedisError
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.config import WEBHOOK_QUEUE
from app.extensions import db
from app.models.bulk import insert_rows
from app.models.outbound_webhooks import WebhookEndpoint, WebhookMessage
from app.models.types import utcnow
from app.outbound_webhooks.events import Fact, envelope, ordering_key
from app.redis_client import get_redis, key

log = logging.getLogger(__name__)

DISPATCH_JOB = "jobs.webhooks.dispatch"
_WROTE = "outbound_webhooks_written"
# While a nudge is pending, more commits add no job: the dispatcher clears it when it starts a pass.
NUDGE_TTL = 5


def new_msg_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def subscribers(event_types: set[str]) -> dict[str, list[int]]:
    """Enabled endpoints per event type among ``event_types``."""
    found: dict[str, list[int]] = {}
    for endpoint_id, wanted in db.session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(WebhookEndpoint.enabled.is_(True))
    ):
        for event_type in set(wanted or ()) & event_types:
            found.setdefault(event_type, []).append(endpoint_id)
    return found


def _user_ids(recipient_ids: set[int]) -> dict[int, str]:
    # Imported here: app.models.recipients -> app.channels -> in_app -> this module, at import time.
    from app.models.recipients import Recipient

    if not recipient_ids:
        return {}
    return dict(
        db.session.execute(select(Recipient.id, Recipient.external_id).where(Recipient.id.in_(recipient_ids))).all()
    )


def emit(facts: Iterable[Fact]) -> int:
    """Add one outbox row per (subscribed endpoint, fact) to the current transaction; returns how many."""
    facts = list(facts)
    if not facts:
        return 0
    endpoints = subscribers({fact.type for fact in facts})
    facts = [fact for fact in facts if fact.type in endpoints]
    if not facts:
        return 0
    users = _user_ids({fact.recipient_id for fact in facts if "user_id" not in fact.data and fact.recipient_id})
    now = utcnow()
    rows = []
    for fact in facts:
        data = fact.data if "user_id" in fact.data else {"user_id": users.get(fact.recipient_id), **fact.data}
        body = envelope(fact.type, now, data)
        for endpoint_id in endpoints[fact.type]:
            msg_id = new_msg_id()
            rows.append(
                {
                    "endpoint_id": endpoint_id,
                    "msg_id": msg_id,
                    "event_type": fact.type,
                    "ordering_key": ordering_key(data, msg_id),
                    "payload": body,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
    insert_rows(WebhookMessage, rows)
    db.session.info[_WROTE] = True
    return len(rows)


def nudge() -> None:
    """Ask for a dispatcher pass (once per NUDGE_TTL while one is pending); Redis down is left to the scheduler."""
    # Imported here: app.tasks -> app.models -> app.channels -> in_app -> this module, at import time.
    from app.tasks import enqueue

    try:
        if get_redis().set(key("webhooks", "nudge"), 1, nx=True, ex=NUDGE_TTL):
            enqueue(DISPATCH_JOB, priority=WEBHOOK_QUEUE)
    except RedisError as error:
        log.warning("could not nudge the webhook dispatcher (%s); the scheduler's tick will", error)


def clear_nudge() -> None:
    try:
        get_redis().delete(key("webhooks", "nudge"))
    except RedisError:
        pass


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_WROTE, False):
        nudge()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_WROTE, None)
