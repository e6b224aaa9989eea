"""The transactional outbox: a fact's writer calls :func:`emit` before its own commit.

The messages are rows inserted in the caller's transaction, so they exist
exactly when the fact does: a rolled-back fact leaves no message, and a process
that dies right after the commit leaves its messages for the dispatcher. Only
once the transaction commits is the dispatcher nudged (one Redis round trip per
commit that wrote messages; a missed nudge is made up by the scheduler's tick).
With no endpoint subscribed to an event type, :func:`emit` costs one Redis GET on PostgreSQL (on SQLite one
small query: see :func:`subscribed_types`):
the event types some enabled endpoint wants are cached per process, keyed by a
generation number in Redis that every endpoint write bumps after its commit
(create, edit, enable, disable, delete -- through the ORM, as the API and the
console write them), so such a change applies to the next emit of every
process. A change the generation misses (Redis down at that moment, a row
written by hand in SQL) applies within ``SUBSCRIBED_TTL`` seconds. Only the
question "is anyone listening?" is cached: when someone is, the endpoints are
read live, so a deleted or disabled endpoint never gets a message.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

from redis.exceptions import RedisError
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.config import WEBHOOK_QUEUE
from app.extensions import db
from app.models.bulk import among, insert_rows, is_postgresql
from app.models.outbound_webhooks import WebhookEndpoint, WebhookMessage
from app.models.types import utcnow
from app.outbound_webhooks.events import Fact, envelope, ordering_key
from app.redis_client import get_redis, key

log = logging.getLogger(__name__)

DISPATCH_JOB = "jobs.webhooks.dispatch"
_WROTE = "outbound_webhooks_written"
# While a nudge is pending, more commits add no job: the dispatcher clears it when it starts a pass.
NUDGE_TTL = 5
_ENDPOINTS_CHANGED = "outbound_webhook_endpoints_changed"
# The longest a process trusts its cached answer to "which event types does any endpoint want?".
SUBSCRIBED_TTL = 5.0
_subscribed: dict = {"generation": None, "types": frozenset(), "until": 0.0}


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


def _generation_key() -> str:
    return key("webhooks", "endpoints-generation")


def subscribed_types() -> frozenset[str]:
    """The event types some enabled endpoint wants (cached: see the module's docstring)."""
    generation = None
    if is_postgresql():
        # Not on SQLite: emit runs inside the caller's write transaction, and under gevent a Redis round trip
        # yields to other greenlets while this one holds SQLite's only write lock; theirs then wait in SQLite's
        # busy handler, which blocks the whole process (50 concurrent accepts timed out). In-process, the
        # query costs about what the Redis GET would.
        try:
            generation = get_redis().get(_generation_key()) or "0"  # never bumped yet (or Redis was emptied)
        except RedisError:
            generation = None
    cached = _subscribed
    if generation is not None and generation == cached["generation"] and time.monotonic() < cached["until"]:
        return cached["types"]
    types = frozenset(
        event_type
        for (wanted,) in db.session.execute(
            select(WebhookEndpoint.event_types).where(WebhookEndpoint.enabled.is_(True))
        )
        for event_type in wanted or ()
    )
    if generation is not None:
        _subscribed.update(generation=generation, types=types, until=time.monotonic() + SUBSCRIBED_TTL)
    return types


def endpoints_changed() -> None:
    """Tell every process that the endpoints changed (after the change's commit)."""
    _subscribed.update(generation=None, until=0.0)
    try:
        get_redis().incr(_generation_key())
    except RedisError as error:
        log.warning("could not announce an endpoint change (%s); it applies within %s s", error, SUBSCRIBED_TTL)


def _user_ids(recipient_ids: set[int]) -> dict[int, str]:
    # Imported here: app.models.recipients -> app.channels -> in_app -> this module, at import time.
    from app.models.recipients import Recipient

    if not recipient_ids:
        return {}
    return dict(
        db.session.execute(select(Recipient.id, Recipient.external_id).where(among(Recipient.id, recipient_ids))).all()
    )


def emit(facts: Iterable[Fact]) -> int:
    """Add one outbox row per (subscribed endpoint, fact) to the current transaction; returns how many."""
    facts = list(facts)
    if not facts or not subscribed_types() & {fact.type for fact in facts}:
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


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context, _instances) -> None:
    changed = (*session.new, *session.deleted, *(o for o in session.dirty if session.is_modified(o)))
    if any(isinstance(o, WebhookEndpoint) for o in changed):
        session.info[_ENDPOINTS_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_ENDPOINTS_CHANGED, False):
        endpoints_changed()
    if session.info.pop(_WROTE, False):
        nudge()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_WROTE, None)
    session.info.pop(_ENDPOINTS_CHANGED, None)
