"""From claims to notifications: the send side of a daily rule, in batches, re-drivable after a crash.

A claim (``rule_sends`` row, status ``claimed``) becomes, in ONE transaction:
a notification whose id is derived from the claim's key
(``rule:{rule}:{recipient}:{local_date}``), one delivery per channel (routing
decisions read live: an opt-out after the claim suppresses it), the in-app
delivery already DELIVERED (the inbox row is the message), and the claim
marked ``sent``. External channels (push, SMS, email...) are then handed to
batch jobs (:func:`dispatch_batch`), which claim deliveries PENDING ->
SENDING set-based and call the providers with the delivery's idempotency key
``herald-{notification id}-{channel}`` -- derived from the claim key too.

A crash before the commit leaves the claim ``claimed``: the next evaluation
re-drives it with the same key (the notification insert is ON CONFLICT DO
NOTHING on that derived id), it never claims again. A crash after the commit
and before the enqueue leaves PENDING deliveries, which the maintenance
reaper re-drives.

At send time the recipient's local time is checked again with their
*current* zone (:func:`app.rules.windows.recheck`). Outside the window the
claim is left ``claimed`` for the next evaluation inside the window; once
the claim's local day is over for them it is marked ``expired`` and nothing
is sent late.
"""
from __future__ import annotations

import logging
import time as clock
import uuid
from collections import defaultdict
from datetime import datetime

from flask import current_app
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import joinedload

from app.channels import Outcome
from app.delivery import routing
from app.delivery.constants import DELIVERED, DISPATCHED, FAILED, PENDING, SENDING, SUPPRESSED
from app.delivery.priority import effective_priority
from app.delivery.rendering import RenderError, pick_variant, render_fields
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Device, Notification, Preference, Recipient, Rule, RuleSend, Suppression, Template
from app.models.bulk import insert_ignoring_conflicts, insert_returning, insert_rows, update_by_id
from app.models.rules import CLAIMED, EXPIRED, SENT
from app.models.rules import SUPPRESSED as CLAIM_SUPPRESSED
from app.models.types import utcnow
from app.realtime.publish import publish_to_user
from app.redis_client import get_redis
from app.rules import windows

log = logging.getLogger(__name__)

NOTIFICATION_NAMESPACE = uuid.UUID("3f0e4a53-5b1c-4a7e-9d7c-6d0b2a1f7e11")
OUTSIDE_WINDOW = "outside_send_window"


def notification_id_for(key: str) -> str:
    """Same claim key -> same notification id, so a re-drive can only insert it once."""
    return uuid.uuid5(NOTIFICATION_NAMESPACE, key).hex


def _facts(recipients) -> dict[int, routing.RecipientFacts]:
    """Routing facts for a batch of recipients in three queries (preferences, devices, suppressions), read live."""
    ids = [r.id for r in recipients]
    preferences: dict[int, dict] = defaultdict(dict)
    for p in db.session.scalars(select(Preference).where(Preference.recipient_id.in_(ids))):
        preferences[p.recipient_id][(p.channel, p.category)] = p.enabled
    platforms: dict[int, set] = defaultdict(set)
    for recipient_id, platform in db.session.execute(
            select(Device.recipient_id, Device.platform).where(Device.recipient_id.in_(ids), Device.active.is_(True)).distinct()):
        platforms[recipient_id].add(platform)
    emails = [r.email for r in recipients if r.email]
    phones = [r.phone for r in recipients if r.phone]
    suppressed = set()
    if emails or phones:
        suppressed = set(db.session.execute(select(Suppression.channel, Suppression.address).where(or_(
            and_(Suppression.channel == "email", Suppression.address.in_(emails)),
            and_(Suppression.channel == "sms", Suppression.address.in_(phones)),
        ))).all())
    facts = {}
    for r in recipients:
        reachable = routing.reachable_channels(r.email, r.phone, platforms[r.id])
        blocked = {c for c, a in (("email", r.email), ("sms", r.phone)) if a and (c, a) in suppressed}
        facts[r.id] = routing.RecipientFacts(
            hard_stop=r.hard_stop, timezone=r.timezone, quiet_start=r.quiet_start, quiet_end=r.quiet_end,
            preferences=preferences[r.id], reachable=reachable, suppressed=frozenset(blocked))
    return facts


def render_in_app(template: Template | None, recipient: Recipient, notification: dict) -> dict[str, str]:
    """The in-app title/body stored on the notification (the inbox row is the message)."""
    if template is None:
        raise RenderError("in_app", "template", "the rule's template no longer exists")
    version = template.version()
    variant = pick_variant(version.variants, "in_app", recipient.locale, template.default_locale) if version else None
    if variant is None:
        raise RenderError("in_app", "template", f"template {template.key!r} has no in_app variant")
    context = {
        "recipient": {"id": recipient.external_id, "email": recipient.email, "phone": recipient.phone,
                      "locale": recipient.locale, "timezone": recipient.timezone, "attributes": recipient.attributes or {}},
        "data": notification["data"],
        "notification": {"id": notification["id"], "type": notification["type"], "category": notification["category"],
                         "title": "", "body": ""},
    }
    return render_fields("in_app", variant, context)


# What the send side reads of a claim and its recipient: plain rows, not ORM objects (half the cost per row).
PENDING_COLUMNS = (RuleSend.id.label("claim_id"), RuleSend.local_date, Recipient.id, Recipient.external_id, Recipient.email,
                   Recipient.phone, Recipient.timezone, Recipient.locale, Recipient.attributes, Recipient.hard_stop,
                   Recipient.quiet_start, Recipient.quiet_end)


def _pending_batch(rule: Rule, after_id: int, size: int):
    """The next claims still ``claimed``, each row carrying its recipient's columns."""
    query = (select(*PENDING_COLUMNS).join(Recipient, Recipient.id == RuleSend.recipient_id)
             .where(RuleSend.rule_id == rule.id, RuleSend.status == CLAIMED, RuleSend.id > after_id)
             .order_by(RuleSend.id).limit(size))
    if db.session.get_bind().dialect.name == "postgresql":
        # A second evaluator running at the same moment takes other claims instead of waiting on these.
        query = query.with_for_update(skip_locked=True, of=RuleSend)
    return db.session.execute(query).all()


def send_claims(rule: Rule, now: datetime, batch_size: int | None = None) -> dict[str, int]:
    """Send every pending claim of ``rule`` (fresh ones and those a crash left behind), batch by batch."""
    config = current_app.config
    batch_size = batch_size or config["RULES_SEND_BATCH"]
    delay = config["RULES_TEST_SEND_DELAY"]
    template = db.session.scalar(select(Template).where(Template.key == rule.template_key))
    totals = {"sent": 0, "waiting": 0, "expired": 0, "suppressed": 0}
    after_id = 0
    while True:
        batch = _pending_batch(rule, after_id, batch_size)
        if not batch:
            db.session.rollback()
            break
        after_id = batch[-1].claim_id
        outcome = _send_batch(rule, template, batch, now)
        for name, count in outcome.items():
            totals[name] += count
        if delay:
            clock.sleep(delay)  # test hook: widens the window a SIGKILL can land in
    return totals


def _send_batch(rule: Rule, template: Template | None, batch, now: datetime) -> dict[str, int]:
    verdicts = {person.claim_id: windows.recheck(now, person.local_date, person.timezone, (person.attributes or {}).get("country"),
                                                 rule.window_start, rule.window_end, rule.every_days, rule.no_timezone_policy)
                for person in batch}
    sendable = [person for person in batch if verdicts[person.claim_id] == windows.SEND]
    facts = _facts(sendable) if sendable else {}
    priority = effective_priority(rule.type, rule.priority)
    note = routing.NotificationFacts(rule.type, rule.category, priority, tuple(rule.channels))

    notifications, deliveries, claim_updates, inbox = [], [], [], []
    counts = {"sent": 0, "waiting": 0, "expired": 0, "suppressed": 0}
    for recipient in batch:
        claim_id = recipient.claim_id
        verdict = verdicts[claim_id]
        if verdict == windows.WAIT:
            counts["waiting"] += 1
            continue
        if verdict == windows.EXPIRE:
            claim_updates.append({"id": claim_id, "status": EXPIRED, "reason": OUTSIDE_WINDOW, "sent_at": None, "notification_id": None})
            counts["expired"] += 1
            continue
        decisions = routing.route(note, facts[recipient.id], now, 0)
        if all(d.action == routing.SUPPRESS for d in decisions):
            claim_updates.append({"id": claim_id, "status": CLAIM_SUPPRESSED, "reason": decisions[0].reason,
                                  "sent_at": None, "notification_id": None})
            counts["suppressed"] += 1
            continue
        key = windows.idempotency_key(rule.id, recipient.id, recipient.local_date)
        notification = {
            "id": notification_id_for(key), "recipient_id": recipient.id, "type": rule.type, "category": rule.category,
            "priority": priority, "template_key": rule.template_key, "template_version": template.current_version if template else None,
            "title": None, "body": None, "data": {"rule_id": rule.id, "local_date": recipient.local_date.isoformat()},
            "channels": list(rule.channels), "collapse_key": f"rule-{rule.id}", "idempotency_key": key,
            "status": "routed", "created_at": now, "routed_at": now, "inbox_at": None,
        }
        for decision in decisions:
            row = {"notification_id": notification["id"], "channel": decision.channel, "status": PENDING,
                   "reason": decision.reason, "not_before": decision.not_before, "attempts": 0, "provider": None,
                   "last_error": None, "error_code": None, "dispatched_at": None, "delivered_at": None,
                   "created_at": now, "updated_at": now}
            if decision.action == routing.SUPPRESS:
                row["status"] = SUPPRESSED
            elif decision.channel == "in_app":
                try:
                    content = render_in_app(template, recipient, notification)
                except RenderError as error:
                    row.update(status=FAILED, error_code="render_error", last_error=str(error))
                else:
                    notification.update(title=content.get("title"), body=content.get("body"), inbox_at=now)
                    row.update(status=DELIVERED, provider="herald", attempts=1, dispatched_at=now, delivered_at=now)
                    inbox.append((recipient.id, notification["id"], content.get("title")))
            deliveries.append(row)
        notifications.append(notification)
        claim_updates.append({"id": claim_id, "status": SENT, "reason": None, "sent_at": now, "notification_id": notification["id"]})
        counts["sent"] += 1

    created = []
    if notifications:
        insert_ignoring_conflicts(Notification, notifications, ["id"])
        created = insert_returning(Delivery, deliveries, ["notification_id", "channel"],
                                   [Delivery.id, Delivery.notification_id, Delivery.channel, Delivery.status, Delivery.not_before])
        if created:
            insert_rows(DeliveryEvent, [
                {"delivery_id": d.id, "status": d.status, "created_at": now,
                 "detail": f"rule {rule.id}" + (f"; deferred until {d.not_before.isoformat()}" if d.not_before else "")}
                for d in created])
    update_by_id(RuleSend, claim_updates)
    db.session.commit()

    fresh = {d.notification_id for d in created if d.channel == "in_app" and d.status == DELIVERED}
    if fresh:
        with get_redis().pipeline(transaction=False) as pipe:
            for recipient_id, notification_id, title in inbox:
                if notification_id in fresh:
                    publish_to_user(recipient_id, "notification", {"id": notification_id, "title": title, "category": rule.category},
                                    event_id=notification_id, pipeline=pipe)
            pipe.execute()
    _hand_over(rule, [d for d in created if d.status == PENDING and d.channel != "in_app"], priority)
    return counts


def _hand_over(rule: Rule, pending, priority: str) -> None:
    """External deliveries go to batch jobs (one job per batch, never one per recipient); deferred ones wait."""
    from jobs.delivery import dispatch_delivery, enqueue
    from jobs.rules import dispatch_rule_deliveries

    now_ids = [d.id for d in pending if d.not_before is None]
    for delivery in pending:
        if delivery.not_before is not None:
            enqueue(dispatch_delivery, delivery.id, priority=priority, at=delivery.not_before)
    size = current_app.config["RULES_SEND_BATCH"]
    for start in range(0, len(now_ids), size):
        enqueue(dispatch_rule_deliveries, rule.id, now_ids[start:start + size], priority=priority)


# -- external channels -------------------------------------------------------------------------

def _outside_window(rule: Rule, delivery_ids: list[int], now: datetime) -> list[int]:
    """Deliveries whose recipient is, in their *current* zone, outside the window now."""
    rows = db.session.execute(
        select(Delivery.id, RuleSend.local_date, Recipient.timezone, Recipient.attributes)
        .join(Notification, Notification.id == Delivery.notification_id)
        .join(RuleSend, RuleSend.notification_id == Notification.id)
        .join(Recipient, Recipient.id == Notification.recipient_id)
        .where(Delivery.id.in_(delivery_ids))
    ).all()
    return [d for d, period, tz, attributes in rows
            if windows.recheck(now, period, tz, (attributes or {}).get("country"), rule.window_start, rule.window_end,
                               rule.every_days, rule.no_timezone_policy) != windows.SEND]


def dispatch_batch(rule: Rule, delivery_ids: list[int], now: datetime | None = None) -> dict[str, int]:
    """Claim a batch of external deliveries set-based, send each, record successes in bulk.

    Failures go through the pipeline's own ``record`` (retry with backoff,
    dead-letter, token and address suppression), one by one: they are rare.
    """
    from jobs.delivery import build_message, record, send_within_slot

    now = now or utcnow()
    late = _outside_window(rule, delivery_ids, now)
    if late:
        suppressed = db.session.execute(
            update(Delivery).where(Delivery.id.in_(late), Delivery.status == PENDING)
            .values(status=SUPPRESSED, reason=OUTSIDE_WINDOW, updated_at=now).returning(Delivery.id)).scalars().all()
        if suppressed:
            insert_rows(DeliveryEvent, [
                {"delivery_id": d, "status": SUPPRESSED, "detail": OUTSIDE_WINDOW, "created_at": now} for d in suppressed])
    claimed = db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(set(delivery_ids) - set(late)), Delivery.status == PENDING,
               or_(Delivery.not_before.is_(None), Delivery.not_before <= now))
        .values(status=SENDING, claimed_at=now, attempts=Delivery.attempts + 1, updated_at=now)
        .returning(Delivery.id)).scalars().all()
    if claimed:
        insert_rows(DeliveryEvent, [
            {"delivery_id": d, "status": SENDING, "detail": None, "created_at": now} for d in claimed])
    db.session.commit()
    counts = {"sent": 0, "failed": 0, "late": len(late), "not_claimed": len(delivery_ids) - len(late) - len(claimed)}
    if not claimed:
        return counts
    deliveries = db.session.scalars(select(Delivery).options(joinedload(Delivery.notification))
                                    .where(Delivery.id.in_(claimed)).order_by(Delivery.id)).all()
    recipients = {r.id: r for r in db.session.scalars(select(Recipient).where(
        Recipient.id.in_({d.notification.recipient_id for d in deliveries})))}
    successes, failures = [], []
    for delivery in deliveries:
        notification = delivery.notification
        try:
            message = build_message(delivery, notification, recipients[notification.recipient_id])
        except RenderError as error:
            from app.channels import Result
            failures.append((delivery.id, Result(Outcome.PERMANENT, "herald", error_code="render_error", detail=str(error)),
                             notification.priority))
            continue
        result = send_within_slot(message)
        if result.outcome in (Outcome.DISPATCHED, Outcome.DELIVERED) and not result.dead_devices:
            successes.append((delivery.id, result))
        else:
            failures.append((delivery.id, result, notification.priority))
    done = utcnow()
    if successes:
        update_by_id(Delivery, [
            {"id": d, "status": DELIVERED if r.outcome is Outcome.DELIVERED else DISPATCHED, "provider": r.provider,
             "provider_message_id": r.provider_message_id, "dispatched_at": done,
             "delivered_at": done if r.outcome is Outcome.DELIVERED else None, "updated_at": done}
            for d, r in successes])
        insert_rows(DeliveryEvent, [
            {"delivery_id": d, "status": DELIVERED if r.outcome is Outcome.DELIVERED else DISPATCHED,
             "detail": r.detail or r.provider_message_id, "created_at": done} for d, r in successes])
        db.session.commit()
    for delivery_id, result, priority in failures:
        record(delivery_id, result, priority)
    counts["sent"], counts["failed"] = len(successes), len(failures)
    return counts
