"""Route a notification into deliveries, then claim -> send -> record each one.

The order is the product's core promise: a delivery is *claimed* (a
conditional UPDATE that exactly one worker wins) and committed before the
provider is called, and the outcome is recorded after. A crash anywhere
leaves either an unclaimed PENDING row (sent later, once) or a SENDING claim
whose lease expires and is re-driven with the same provider idempotency key.

Fault isolation: routing sends in-app inline, but every external channel
(email, SMS, push, web push) is dispatched in a job of its own, and at most
``CHANNEL_SLOTS`` workers may be inside one channel's send at a time. A
hanging SMTP server therefore holds at most that many workers (until its
timeouts open the circuit), never the SMS of the same notification.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import current_app
from rq import Retry
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import joinedload

from app.batch_send import due
from app.channels import DeviceTarget, Message, Outcome, Result, adapter_for, channel_class
from app.channels.guard import acquire_slot, release_slot
from app.delivery import routing
from app.delivery.constants import DELIVERED, DISPATCHED, FAILED, PENDING, SENDING, SUPPRESSED
from app.delivery.rendering import RenderError, inline_variant, pick_variant, render_fields
from app.delivery.retry import next_retry_delay
from app.delivery.tracking import track
from app.delivery.unsubscribe import list_unsubscribe_headers, unsubscribe_token
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Device, Notification, Preference, Recipient, Suppression, Template
from app.models.bulk import insert_ignoring_conflicts
from app.models.types import utcnow
from app.redis_client import get_redis, key
from jobs.queues import get_queue

log = logging.getLogger(__name__)

# RQ re-runs a job whose worker died (see StartedJobRegistry.cleanup) while it has retries left.
JOB_RETRY = Retry(max=3, interval=[1, 5, 30])
JOB_TIMEOUT = 300
# In-app first: it is instant and what an open page is waiting for.
CHANNEL_ORDER = ("in_app", "push", "web_push", "sms", "email")


def enqueue(func, *args, priority: str = "normal", at: datetime | None = None):
    queue = get_queue(priority)
    options = {"retry": JOB_RETRY, "job_timeout": JOB_TIMEOUT, "failure_ttl": 7 * 24 * 3600}
    if at is not None and at > utcnow():
        return queue.enqueue_at(at, func, *args, **options)
    # One round trip: on its own, RQ sends the queue registration and the job in two transactions.
    with queue.connection.pipeline() as pipe:
        job = queue.enqueue(func, *args, pipeline=pipe, **options)
        pipe.execute()
    return job


# -- routing -----------------------------------------------------------------------------------

def load_recipient_facts(recipient: Recipient, now: datetime) -> routing.RecipientFacts:
    """Everything routing needs about a recipient, read live (no cache: a change applies to the next send)."""
    preferences = {
        (p.channel, p.category): p.enabled
        for p in db.session.scalars(select(Preference).where(Preference.recipient_id == recipient.id))
    }
    platforms = set(db.session.scalars(
        select(Device.platform).where(Device.recipient_id == recipient.id, Device.active.is_(True)).distinct()
    ))
    addresses = [(c, a) for c, a in (("email", recipient.email), ("sms", recipient.phone)) if a]
    suppressed = set()
    if addresses:
        suppressed = set(db.session.scalars(select(Suppression.channel).where(
            or_(*[and_(Suppression.channel == c, Suppression.address == a) for c, a in addresses])
        )))
    hour_ago = (now - timedelta(hours=1)).timestamp()
    marketing_recent = get_redis().zcount(key("cap", recipient.id), hour_ago, "+inf")
    return routing.RecipientFacts(
        hard_stop=recipient.hard_stop,
        timezone=recipient.timezone,
        quiet_start=recipient.quiet_start,
        quiet_end=recipient.quiet_end,
        preferences=preferences,
        reachable=routing.reachable_channels(recipient.email, recipient.phone, platforms),
        suppressed=frozenset(suppressed),
        marketing_sent_last_hour=marketing_recent,
    )


def route_notification(notification_id: str) -> None:
    """Create one delivery per requested channel (idempotently), then dispatch what may go now."""
    now = utcnow()
    notification = db.session.get(Notification, notification_id)
    if notification is None:
        return  # erased with its recipient before we got to it
    recipient = db.session.get(Recipient, notification.recipient_id)
    facts = load_recipient_facts(recipient, now)
    note = routing.NotificationFacts(notification.type, notification.category, notification.priority, tuple(notification.channels))
    decisions = routing.route(note, facts, now, current_app.config["MARKETING_CAP_PER_HOUR"])

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
        created = db.session.scalars(select(Delivery).where(
            Delivery.notification_id == notification.id, ~Delivery.events.any()
        )).all()
        for delivery in created:
            detail = delivery.reason if delivery.status == SUPPRESSED else (
                f"deferred until {delivery.not_before.isoformat()} ({delivery.reason})" if delivery.not_before else "routed"
            )
            db.session.add(DeliveryEvent(delivery_id=delivery.id, status=delivery.status, detail=detail, created_at=now))
    notification.status = "routed"
    notification.routed_at = notification.routed_at or now
    db.session.commit()

    if notification.type == "marketing" and any(d.action != routing.SUPPRESS for d in decisions):
        # Member = notification id, so a re-run of this job does not count twice.
        cap_key = key("cap", recipient.id)
        pipe = get_redis().pipeline()
        pipe.zadd(cap_key, {notification.id: now.timestamp()})
        pipe.zremrangebyscore(cap_key, "-inf", (now - timedelta(hours=1)).timestamp())
        pipe.expire(cap_key, 3600)
        pipe.execute()

    pending = db.session.scalars(select(Delivery).where(
        Delivery.notification_id == notification.id, Delivery.status == PENDING
    )).all()
    for delivery in sorted(pending, key=lambda d: CHANNEL_ORDER.index(d.channel)):
        if delivery.not_before and delivery.not_before > now:
            enqueue(dispatch_delivery, delivery.id, priority=notification.priority, at=delivery.not_before)
        elif _is_external(delivery.channel):
            enqueue(dispatch_delivery, delivery.id, priority=notification.priority)
        else:
            dispatch_delivery(delivery.id)


def _is_external(channel: str) -> bool:
    adapter = channel_class(channel)
    return adapter is None or adapter.external


# -- dispatch ----------------------------------------------------------------------------------

def claim(delivery_id: int, now: datetime, lease_seconds: int) -> bool:
    """PENDING (and due) -> SENDING, or take over a SENDING claim whose lease expired. One winner."""
    result = db.session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, due(now, lease_seconds))
        .values(status=SENDING, claimed_at=now, attempts=Delivery.attempts + 1, updated_at=now)
    )
    if result.rowcount != 1:
        db.session.rollback()
        return False
    db.session.add(DeliveryEvent(delivery_id=delivery_id, status=SENDING, detail=None, created_at=now))
    db.session.commit()
    return True


def render_context(recipient: Recipient, notification: Notification) -> dict:
    return {
        "recipient": {
            "id": recipient.external_id, "email": recipient.email, "phone": recipient.phone,
            "locale": recipient.locale, "timezone": recipient.timezone, "attributes": recipient.attributes or {},
        },
        "data": notification.data or {},
        "notification": {"id": notification.id, "type": notification.type, "category": notification.category,
                         "title": notification.title or "", "body": notification.body or ""},
    }


def render_content(notification: Notification, recipient: Recipient, channel: str) -> dict[str, str]:
    variant = None
    if notification.template_key:
        template = db.session.scalar(select(Template).where(Template.key == notification.template_key))
        version = template.version(notification.template_version) if template else None
        if version is None:
            raise RenderError(channel, "template", f"template {notification.template_key!r} no longer exists")
        variant = pick_variant(version.variants, channel, recipient.locale, template.default_locale)
    if variant is None and (notification.title or notification.body):
        variant = inline_variant(channel, notification.title, notification.body)
    if variant is None:
        raise RenderError(channel, "template", f"template {notification.template_key!r} has no {channel} variant")
    return render_fields(channel, variant, render_context(recipient, notification))


def address_of(recipient: Recipient, channel: str) -> str | None:
    """The recipient's address on a channel (its adapter names the column), if the channel uses one."""
    adapter = channel_class(channel)
    return getattr(recipient, adapter.address_field) if adapter and adapter.address_field else None


def active_devices(recipient: Recipient, channel: str) -> tuple[DeviceTarget, ...]:
    adapter = channel_class(channel)
    if adapter is None or not adapter.platforms:
        return ()
    devices = db.session.scalars(select(Device).where(
        Device.recipient_id == recipient.id, Device.active.is_(True), Device.platform.in_(adapter.platforms)
    ).order_by(Device.id))
    return tuple(DeviceTarget(d.id, d.platform, d.token, d.p256dh, d.auth) for d in devices)


def build_message(delivery: Delivery, notification: Notification, recipient: Recipient) -> Message:
    config = current_app.config
    headers = {}
    if delivery.channel == "email" and notification.type == "marketing":
        token = unsubscribe_token(config["SECRET_KEY"], recipient.external_id, notification.category)
        headers = list_unsubscribe_headers(f"{config['BASE_URL']}/unsubscribe/{token}")
    return track(Message(
        delivery_id=delivery.id,
        recipient_id=recipient.id,
        notification_id=notification.id,
        channel=delivery.channel,
        idempotency_key=delivery.provider_idempotency_key,
        recipient_external_id=recipient.external_id,
        notification_type=notification.type,
        category=notification.category,
        priority=notification.priority,
        content=render_content(notification, recipient, delivery.channel),
        data=notification.data or {},
        address=address_of(recipient, delivery.channel),
        collapse_key=notification.collapse_key,
        headers=headers,
        devices=active_devices(recipient, delivery.channel),
    ), config)


def reschedule_if_early(delivery_id: int, now: datetime) -> bool:
    """A job that runs before its delivery is due (a retry enqueued at once because the clock passed its time
    while it was being scheduled, a duplicate) puts it back for its time instead of dropping it on the reaper."""
    row = db.session.execute(
        select(Delivery.status, Delivery.not_before, Notification.priority)
        .join(Notification, Notification.id == Delivery.notification_id).where(Delivery.id == delivery_id)
    ).first()
    db.session.rollback()
    if row is None or row.status != PENDING or row.not_before is None or row.not_before <= now:
        return False
    enqueue(dispatch_delivery, delivery_id, priority=row.priority, at=row.not_before)
    return True


def dispatch_delivery(delivery_id: int) -> str:
    """Claim, send, record. Returns what happened, for logs and tests."""
    config = current_app.config
    now = utcnow()
    if not claim(delivery_id, now, config["DISPATCH_LEASE_SECONDS"]):
        return "rescheduled" if reschedule_if_early(delivery_id, now) else "not-claimed"
    delivery = db.session.scalar(
        select(Delivery).options(joinedload(Delivery.notification)).where(Delivery.id == delivery_id)
    )
    notification = delivery.notification
    recipient = db.session.get(Recipient, notification.recipient_id)
    try:
        message = build_message(delivery, notification, recipient)
    except RenderError as error:
        result = Result(Outcome.PERMANENT, "herald", error_code="render_error", detail=str(error))
    else:
        if channel_class(delivery.channel) is None:
            result = Result(Outcome.PERMANENT, "herald", error_code="channel_not_configured",
                            detail=f"no adapter is configured for {delivery.channel}")
        else:
            result = send_within_slot(message)
    return record(delivery_id, result, notification.priority)


def send_within_slot(message: Message) -> Result:
    """Call the adapter, holding one of the channel's worker slots while an external one is in flight."""
    config = current_app.config
    slot = None
    if _is_external(message.channel):
        slot = acquire_slot(message.channel, config["CHANNEL_SLOTS"], config["DISPATCH_LEASE_SECONDS"])
        if slot is None:
            return Result(Outcome.WAIT, message.channel, error_code="channel_busy",
                          detail=f"all {config['CHANNEL_SLOTS']} {message.channel} slots are busy",
                          retry_after=1 + random.random())
    try:
        return adapter_for(message.channel, config).send(message)
    except Exception as error:  # an adapter bug must not lose the delivery: retry it
        log.exception("adapter %s raised for delivery %s", message.channel, message.delivery_id)
        return Result(Outcome.TRANSIENT, message.channel, error_code="adapter_error", detail=repr(error)[:500])
    finally:
        if slot is not None:
            release_slot(message.channel, slot)


def record(delivery_id: int, result: Result, priority: str,
           requeue: Callable[[list[int], datetime], None] | None = None) -> str:
    """Write the outcome of one send and its event; schedule a retry or dead-letter when needed.

    A retry runs ``dispatch_delivery`` unless the caller's batch path passes ``requeue`` (a rule's deliveries
    must come back through the rule's window re-check, a campaign's through its pause/cancel check).
    """
    now = utcnow()
    delivery = db.session.get(Delivery, delivery_id)
    delivery.provider = result.provider
    delivery.updated_at = now
    if result.outcome in (Outcome.DISPATCHED, Outcome.DELIVERED):
        delivery.status = DELIVERED if result.outcome is Outcome.DELIVERED else DISPATCHED
        delivery.provider_message_id = result.provider_message_id
        delivery.dispatched_at = now
        if delivery.status == DELIVERED:
            delivery.delivered_at = now
        delivery.last_error = delivery.error_code = None
        detail = result.detail or result.provider_message_id
    elif result.outcome is Outcome.WAIT:
        # Nothing was tried: give the attempt back and come back when the provider may be called.
        delay = result.retry_after or 1.0
        delivery.attempts = max(0, delivery.attempts - 1)
        delivery.status = PENDING
        delivery.not_before = now + timedelta(seconds=delay)
        detail = f"waiting {delay:.1f}s: {result.detail or result.error_code}"
    elif result.outcome is Outcome.TRANSIENT:
        delay = next_retry_delay(delivery.attempts)
        if delay is not None and result.retry_after:
            delay = max(delay, result.retry_after)
        delivery.last_error, delivery.error_code = result.detail, result.error_code
        if delay is None:
            delivery.status = FAILED
            delivery.dead_lettered_at = now
            detail = f"gave up after {delivery.attempts} attempts: {result.detail}"
        else:
            delivery.status = PENDING
            delivery.not_before = now + timedelta(seconds=delay)
            detail = f"attempt {delivery.attempts} failed ({result.error_code}: {result.detail}); retry in {delay:.1f}s"
    else:
        delivery.status = FAILED
        delivery.last_error, delivery.error_code = result.detail, result.error_code
        delivery.dead_lettered_at = now
        detail = f"{result.error_code}: {result.detail}"
        if result.outcome is Outcome.TOKEN_GONE:
            _suppress_dead_address(delivery)
    if result.dead_devices:
        _deactivate_devices(result.dead_devices, now)
    db.session.add(DeliveryEvent(delivery_id=delivery.id, status=delivery.status, detail=detail, created_at=now))
    db.session.commit()
    if delivery.status == PENDING:
        if requeue is None:
            enqueue(dispatch_delivery, delivery.id, priority=priority, at=delivery.not_before)
        else:
            requeue([delivery.id], delivery.not_before)
    return delivery.status


def _deactivate_devices(dead: tuple[tuple[int, str], ...], now: datetime) -> None:
    """Dead push tokens and web-push subscriptions stop at once: never tried again, kept for the record."""
    for device_id, reason in dead:
        db.session.execute(update(Device).where(Device.id == device_id, Device.active.is_(True)).values(
            active=False, deactivated_reason=reason[:255]))


def _suppress_dead_address(delivery: Delivery) -> None:
    """A hard bounce (or dead number) goes on the suppression list so it is never tried again."""
    recipient = db.session.get(Recipient, delivery.notification.recipient_id)
    address = address_of(recipient, delivery.channel)
    if address:
        insert_ignoring_conflicts(Suppression, [{
            "channel": delivery.channel, "address": Suppression.canonical(delivery.channel, address), "reason": f"hard bounce ({delivery.error_code})", "created_at": utcnow(),
        }], ["channel", "address"])
