"""Sending in batches, shared by campaign fan-out and daily rules.

One batch of deliveries is sent the way single notifications are -- claim,
then send, then record, with the provider idempotency key
``herald-{notification}-{channel}`` -- but with everything a batch can share
loaded once: recipients and their routing facts in a handful of queries,
template variants compiled once per version, devices in one query, and
provider calls in flight together when the adapter allows it.

What differs between a campaign and a rule (progress counters, how to try a
delivery again later) is the :class:`Sender` the caller passes in.
"""
from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, or_, select, update

from app.channels import DeviceTarget, Message, Outcome, Result, adapter_for, channel_class
from app.channels.guard import acquire_slot, release_slot
from app.delivery import routing
from app.delivery.constants import DELIVERED, DISPATCHED, FAILED, PENDING, SENDING
from app.delivery.rendering import RenderError, VersionRenderer
from app.delivery.tracking import track
from app.delivery.unsubscribe import list_unsubscribe_headers, unsubscribe_token
from app.extensions import db
from app.models import DeliveryEvent, Device, Delivery, Notification, Preference, Recipient, Suppression
from app.models.bulk import insert_rows, update_by_id
from app.models.types import utcnow
from app.redis_client import get_redis, key

log = logging.getLogger(__name__)

# External sends are claimed, sent and recorded this many at a time (the most a crash can leave SENDING).
SEND_CHUNK = 100


# -- loading the batch -------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    id: int
    external_id: str
    email: str | None
    phone: str | None
    timezone: str | None
    locale: str | None
    attributes: dict
    hard_stop: bool
    quiet_start: object
    quiet_end: object

    def context(self, notification: dict) -> dict:
        """The same variables ``jobs.delivery.render_context`` offers templates."""
        return {
            "recipient": {"id": self.external_id, "email": self.email, "phone": self.phone, "locale": self.locale,
                          "timezone": self.timezone, "attributes": self.attributes or {}},
            "data": notification.get("data") or {},
            "notification": {"id": notification["id"], "type": notification["type"], "category": notification["category"],
                             "title": notification.get("title") or "", "body": notification.get("body") or ""},
        }


PERSON_COLUMNS = (Recipient.id, Recipient.external_id, Recipient.email, Recipient.phone, Recipient.timezone,
                  Recipient.locale, Recipient.attributes, Recipient.hard_stop, Recipient.quiet_start, Recipient.quiet_end)



def load_people(ids: list[int]) -> dict[int, Person]:
    rows = db.session.execute(select(*PERSON_COLUMNS).where(Recipient.id.in_(ids))).all()
    return {row[0]: Person(*row) for row in rows}


def load_facts(people: list[Person], channels: list[str], marketing: bool, now: datetime) -> dict[int, routing.RecipientFacts]:
    """Routing facts for the whole batch: a query each for preferences, devices and suppressions."""
    ids = [p.id for p in people]
    preferences: dict[int, dict] = defaultdict(dict)
    for recipient_id, channel, category, enabled in db.session.execute(
        select(Preference.recipient_id, Preference.channel, Preference.category, Preference.enabled)
        .where(Preference.recipient_id.in_(ids), Preference.channel.in_(channels))
    ):
        preferences[recipient_id][(channel, category)] = enabled
    platforms: dict[int, set[str]] = defaultdict(set)
    if {"push", "web_push"} & set(channels):
        for recipient_id, platform in db.session.execute(
            select(Device.recipient_id, Device.platform).where(Device.recipient_id.in_(ids), Device.active.is_(True)).distinct()
        ):
            platforms[recipient_id].add(platform)
    suppressed: set[tuple[str, str]] = set()
    lookups = [(c, [getattr(p, field) for p in people if getattr(p, field)])
               for c, field in (("email", "email"), ("sms", "phone")) if c in channels]
    lookups = [(c, addresses) for c, addresses in lookups if addresses]
    if lookups:
        suppressed = set(db.session.execute(select(Suppression.channel, Suppression.address).where(
            or_(*[and_(Suppression.channel == c, Suppression.address.in_(addresses)) for c, addresses in lookups])
        )).all())
    recent = [0] * len(people)
    cap = current_app.config["MARKETING_CAP_PER_HOUR"]
    if marketing and cap > 0:
        pipe = get_redis().pipeline(transaction=False)
        hour_ago = (now - timedelta(hours=1)).timestamp()
        for person in people:
            pipe.zcount(key("cap", person.id), hour_ago, "+inf")
        recent = pipe.execute()
    facts = {}
    for person, marketing_recent in zip(people, recent):
        reachable = routing.reachable_channels(person.email, person.phone, platforms[person.id])
        blocked = {c for c, a in (("email", person.email), ("sms", person.phone)) if a and (c, a) in suppressed}
        facts[person.id] = routing.RecipientFacts(
            hard_stop=person.hard_stop, timezone=person.timezone, quiet_start=person.quiet_start,
            quiet_end=person.quiet_end, preferences=preferences.get(person.id, {}), reachable=reachable,
            suppressed=frozenset(blocked), marketing_sent_last_hour=int(marketing_recent),
        )
    return facts


# -- who is sending ----------------------------------------------------------------------------

def _no_tally(counts: dict[str, int]) -> None:
    return None


@dataclass(frozen=True)
class Sender:
    """What a batch send needs from its origin: how to render, at what priority, how to retry later, what to count."""

    renderer: VersionRenderer
    priority: str
    # Deliveries to run again at the given time: the provider said "not now", or a retry after a failure.
    requeue: Callable[[list[int], datetime], None]
    # Counters of what this run changed, e.g. ``{"sent:push": 98, "failed": 2}`` (a campaign's progress).
    tally: Callable[[dict[str, int]], None] = dataclass_field(default=_no_tally)


def record_marketing_sends(sent: dict[int, str], now: datetime) -> None:
    """Count marketing notifications against each recipient's hourly cap; ``sent`` maps recipient -> notification.

    The member is the notification id, so a re-run of the same batch counts once.
    """
    if not sent:
        return
    hour_ago = (now - timedelta(hours=1)).timestamp()
    pipe = get_redis().pipeline(transaction=False)
    for recipient_id, notification_id in sent.items():
        cap_key = key("cap", recipient_id)
        pipe.zadd(cap_key, {notification_id: now.timestamp()})
        pipe.zremrangebyscore(cap_key, "-inf", hour_ago)
        pipe.expire(cap_key, 3600)
    pipe.execute()


# -- sending -----------------------------------------------------------------------------------

def due(now: datetime, lease_seconds: int | None = None):
    """Deliveries that may be claimed now: PENDING and due, or SENDING whose claim's lease ran out (a crashed sender)."""
    lease = current_app.config["DISPATCH_LEASE_SECONDS"] if lease_seconds is None else lease_seconds
    return or_(
        and_(Delivery.status == PENDING, or_(Delivery.not_before.is_(None), Delivery.not_before <= now)),
        and_(Delivery.status == SENDING, Delivery.claimed_at < now - timedelta(seconds=lease)),
    )


def send_channel(sender: Sender, channel: str, scope, people_by_id: dict[int, Person], now: datetime) -> bool:
    """Claim this channel's due deliveries chunk by chunk, send each through the adapter, record each chunk.

    Chunks bound what a crash can leave ambiguous: at most ``SEND_CHUNK``
    deliveries are SENDING at any moment, and those are re-driven after their
    lease with the same provider idempotency key. False = every slot of the
    channel is busy; nothing was claimed, try later.
    """
    adapter_class = channel_class(channel)
    candidates = db.session.execute(select(Delivery.id).where(scope, Delivery.channel == channel, due(now))).scalars().all()
    db.session.rollback()
    if not candidates:
        return True
    config = current_app.config
    slot = None
    if adapter_class is not None and adapter_class.external:
        # One slot for the whole batch: the same fault isolation as single sends, at one Redis call per batch.
        slot = acquire_slot(channel, config["CHANNEL_SLOTS"], config["DISPATCH_LEASE_SECONDS"])
        if slot is None:
            return False
    try:
        for start in range(0, len(candidates), SEND_CHUNK):
            chunk = candidates[start:start + SEND_CHUNK]
            claim_at = utcnow()
            claimed = db.session.execute(
                update(Delivery).where(Delivery.id.in_(chunk), due(claim_at))
                .values(status=SENDING, claimed_at=claim_at, attempts=Delivery.attempts + 1, updated_at=claim_at)
                .returning(Delivery.id, Delivery.notification_id, Delivery.attempts)
            ).all()
            db.session.commit()  # the claim is durable before any provider call
            if not claimed:
                continue
            retry_after = _send_claimed(sender, channel, claimed, people_by_id, adapter_class)
            if retry_after is not None:  # the provider said "not now": the rest waits with it, unclaimed
                rest = candidates[start + SEND_CHUNK:]
                for offset in range(0, len(rest), 1000):
                    sender.requeue(rest[offset:offset + 1000], utcnow() + timedelta(seconds=retry_after + random.random()))
                break
        return True
    finally:
        if slot is not None:
            release_slot(channel, slot)


def _messages(sender: Sender, channel: str, claimed, people_by_id: dict[int, Person]):
    """(delivery id, Message or RenderError) for every claimed delivery, built from rows loaded in bulk."""
    notification_ids = [n for _d, n, _a in claimed]
    notes = {row.id: row for row in db.session.execute(select(
        Notification.id, Notification.recipient_id, Notification.type, Notification.category, Notification.priority,
        Notification.title, Notification.body, Notification.data, Notification.collapse_key,
    ).where(Notification.id.in_(notification_ids))).all()}
    missing = [n.recipient_id for n in notes.values() if n.recipient_id not in people_by_id]
    if missing:
        people_by_id = {**people_by_id, **load_people(missing)}
    adapter_class = channel_class(channel)
    devices: dict[int, list[DeviceTarget]] = defaultdict(list)
    if adapter_class is not None and adapter_class.platforms:
        for d in db.session.execute(select(Device).where(
            Device.recipient_id.in_({n.recipient_id for n in notes.values()}), Device.active.is_(True),
            Device.platform.in_(adapter_class.platforms)).order_by(Device.id)).scalars():
            devices[d.recipient_id].append(DeviceTarget(d.id, d.platform, d.token, d.p256dh, d.auth))
    config = current_app.config
    for delivery_id, notification_id, _attempts in claimed:
        note = notes[notification_id]
        person = people_by_id[note.recipient_id]
        row = {"id": note.id, "type": note.type, "category": note.category, "title": note.title, "body": note.body,
               "data": note.data}
        try:
            content = sender.renderer.render(channel, person.locale, person.context(row))
        except RenderError as error:
            yield delivery_id, error
            continue
        headers = {}
        if channel == "email" and note.type == "marketing":
            token = unsubscribe_token(config["SECRET_KEY"], person.external_id, note.category)
            headers = list_unsubscribe_headers(f"{config['BASE_URL']}/unsubscribe/{token}")
        address_field = adapter_class.address_field if adapter_class else None
        yield delivery_id, track(Message(
            delivery_id=delivery_id, recipient_id=person.id, notification_id=note.id, channel=channel,
            idempotency_key=f"herald-{note.id}-{channel}", recipient_external_id=person.external_id,
            notification_type=note.type, category=note.category, priority=note.priority, content=content,
            data=note.data or {}, address=getattr(person, address_field) if address_field else None,
            collapse_key=note.collapse_key, headers=headers, devices=tuple(devices.get(person.id, ())),
        ), config)


def _call_adapter(app, adapter, channel: str, message: Message) -> Result:
    with app.app_context():
        try:
            return adapter.send(message)
        except Exception as error:  # an adapter bug must not lose the delivery: it retries
            log.exception("adapter %s raised for delivery %s", channel, message.delivery_id)
            return Result(Outcome.TRANSIENT, channel, error_code="adapter_error", detail=repr(error)[:500])


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(size: int) -> ThreadPoolExecutor:
    """One thread pool per worker process and size, reused across batches."""
    if size not in _pools:
        _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"batch-send-{size}")
    return _pools[size]


def send_messages(adapter, messages: list[tuple[int, Message]]) -> list[tuple[int, Result]]:
    """Send ``(delivery id, message)`` pairs through one adapter; results in the same order.

    An adapter whose ``send`` is thread-safe (a pooled HTTP client) raises
    ``Channel.concurrent_sends``: then up to N messages are in flight at once,
    so a provider's round trip is not paid N times in a row. With the default
    of 1 (SMTP's single connection) they go one by one, and a "not now" from
    the provider leaves the rest unsent, waiting with it.
    """
    app = current_app._get_current_object()
    concurrency = max(1, adapter.concurrent_sends)
    if concurrency > 1 and len(messages) > 1:
        futures = [(d, _pool(concurrency).submit(_call_adapter, app, adapter, adapter.name, m)) for d, m in messages]
        return [(d, future.result()) for d, future in futures]
    results: list[tuple[int, Result]] = []
    for delivery_id, message in messages:
        if results and results[-1][1].outcome is Outcome.WAIT:
            results.append((delivery_id, results[-1][1]))
            continue
        results.append((delivery_id, _call_adapter(app, adapter, adapter.name, message)))
    return results


def _send_claimed(sender: Sender, channel: str, claimed, people_by_id: dict[int, Person], adapter_class) -> float | None:
    """Send claimed deliveries and record the outcomes; returns a delay when the provider asked to wait."""
    from jobs.delivery import record

    config = current_app.config
    adapter = adapter_for(channel, config) if adapter_class is not None else None
    successes, one_by_one, waits = [], [], []
    items = list(_messages(sender, channel, claimed, people_by_id))
    for delivery_id, item in items:
        if isinstance(item, RenderError):
            one_by_one.append((delivery_id, Result(Outcome.PERMANENT, "herald", error_code="render_error", detail=str(item))))
        elif adapter is None:
            one_by_one.append((delivery_id, Result(Outcome.PERMANENT, "herald", error_code="channel_not_configured",
                                                 detail=f"no adapter is configured for {channel}")))
    messages = [(d, m) for d, m in items if isinstance(m, Message)] if adapter is not None else []
    for delivery_id, result in send_messages(adapter, messages) if messages else []:
        if result.outcome in (Outcome.DISPATCHED, Outcome.DELIVERED) and not result.dead_devices:
            successes.append((delivery_id, result))
        elif result.outcome is Outcome.WAIT:
            waits.append((delivery_id, result))
        else:
            one_by_one.append((delivery_id, result))
    now = utcnow()
    if successes:
        update_by_id(Delivery, [{
            "id": delivery_id, "status": DELIVERED if r.outcome is Outcome.DELIVERED else DISPATCHED,
            "provider": r.provider, "provider_message_id": r.provider_message_id, "dispatched_at": now,
            "delivered_at": now if r.outcome is Outcome.DELIVERED else None, "last_error": None, "error_code": None,
            "updated_at": now,
        } for delivery_id, r in successes])
        insert_rows(DeliveryEvent, [{
            "delivery_id": delivery_id, "status": DELIVERED if r.outcome is Outcome.DELIVERED else DISPATCHED,
            "detail": r.detail or r.provider_message_id, "created_at": now,
        } for delivery_id, r in successes])
    retry_after = None
    if waits:
        # Nothing was tried for these: give the attempt back, as ``record`` does for a WAIT.
        retry_after = max((r.retry_after or 1.0 for _d, r in waits), default=1.0)
        waiting = {d for d, _r in waits}
        update_by_id(Delivery, [{
            "id": delivery_id, "status": PENDING, "attempts": max(0, attempts - 1),
            "not_before": now + timedelta(seconds=retry_after), "updated_at": now,
        } for delivery_id, _n, attempts in claimed if delivery_id in waiting])
    db.session.commit()
    sent, failed = len(successes), 0
    # The single-send policy, one by one (rare): backoff, dead letter, suppression; and tokens found dead on the way.
    for delivery_id, result in one_by_one:
        status = record(delivery_id, result, sender.priority, sender.requeue)
        failed += status == FAILED
        sent += status in (DISPATCHED, DELIVERED)
    sender.tally({f"sent:{channel}": sent, "failed": failed})
    if waits:
        sender.requeue([d for d, _r in waits], now + timedelta(seconds=retry_after + random.random()))
    return retry_after
