"""From claims to notifications: the send side of a daily rule, in batches, re-drivable after a crash.

A claim (``rule_sends`` row, status ``claimed``) becomes, in ONE transaction:
a notification whose id is derived from the claim's key
(``rule:{rule}:{recipient}:{local_date}``), one delivery per channel (routing
decisions read live: an opt-out after the claim suppresses it), the in-app
delivery already DELIVERED (the inbox row is the message), and the claim
marked ``sent``. External channels (push, SMS, email...) are then handed to
batch jobs (:func:`dispatch_batch`), which send them with
:mod:`app.batch_send` -- the campaigns' sender: claimed PENDING -> SENDING
in chunks, provider calls in flight together, the delivery's idempotency key
``herald-{notification id}-{channel}``, derived from the claim key too.

A crash before the commit leaves the claim ``claimed``: the next evaluation
re-drives it with the same key (the notification insert is ON CONFLICT DO
NOTHING on that derived id), it never claims again. A crash after the commit
and before the enqueue leaves PENDING deliveries, which the maintenance
reaper hands back to :func:`dispatch_batch` (never to the single-send path).

The recipient's local time is checked again with their *current* zone
(:func:`app.rules.windows.recheck`) when the claim is sent and again when
each external delivery is dispatched, however late that is (quiet hours, a
retry, a re-drive). Outside the window a claim is left ``claimed`` for the
next evaluation inside the window, and once the claim's local day is over for
them it is marked ``expired``; an external delivery outside the window is
suppressed. Nothing is sent late.
"""
from __future__ import annotations

import logging
import random
import time as clock
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from app.batch_send import PERSON_COLUMNS, Person, Sender, due, load_facts, record_marketing_sends, send_channel
from app.delivery import routing
from app.delivery.constants import DELIVERED, FAILED, PENDING, SUPPRESSED
from app.delivery.priority import effective_priority
from app.delivery.rendering import RenderError, VersionRenderer, renderer_for
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Notification, Recipient, Rule, RuleSend, Template
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


def rule_of(notification_id: str, notification_key: str | None) -> int | None:
    """The rule that made this notification, or None. Only a notification whose id is derived from its
    ``rule:{rule}:{recipient}:{date}`` key counts: an API caller may choose any idempotency key, not the id."""
    parts = (notification_key or "").split(":")
    if len(parts) != 4 or parts[0] != "rule" or not parts[1].isdigit():
        return None
    return int(parts[1]) if notification_id == notification_id_for(notification_key) else None


@dataclass(frozen=True)
class Claim:
    id: int
    local_date: date
    person: Person


def _pending_batch(rule: Rule, after_id: int, size: int) -> list[Claim]:
    """The next claims still ``claimed``, with their recipients (plain rows: half the cost of ORM objects)."""
    query = (select(RuleSend.id, RuleSend.local_date, *PERSON_COLUMNS).join(Recipient, Recipient.id == RuleSend.recipient_id)
             .where(RuleSend.rule_id == rule.id, RuleSend.status == CLAIMED, RuleSend.id > after_id)
             .order_by(RuleSend.id).limit(size))
    if db.session.get_bind().dialect.name == "postgresql":
        # A second evaluator running at the same moment takes other claims instead of waiting on these.
        query = query.with_for_update(skip_locked=True, of=RuleSend)
    return [Claim(row[0], row[1], Person(*row[2:])) for row in db.session.execute(query)]


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
        after_id = batch[-1].id
        outcome = _send_batch(rule, template, batch, now)
        for name, count in outcome.items():
            totals[name] += count
        if delay:
            clock.sleep(delay)  # test hook: widens the window a SIGKILL can land in
    return totals


def _renderer(template: Template | None) -> VersionRenderer | None:
    if template is None or template.version() is None:
        return None
    return renderer_for(template, template.current_version)


def _send_batch(rule: Rule, template: Template | None, batch: list[Claim], now: datetime) -> dict[str, int]:
    verdicts = {claim.id: windows.recheck(now, claim.local_date, claim.person.timezone, (claim.person.attributes or {}).get("country"),
                                          rule.window_start, rule.window_end, rule.every_days, rule.no_timezone_policy)
                for claim in batch}
    sendable = [claim.person for claim in batch if verdicts[claim.id] == windows.SEND]
    facts = load_facts(sendable, list(rule.channels), rule.type == "marketing", now) if sendable else {}
    priority = effective_priority(rule.type, rule.priority)
    note = routing.NotificationFacts(rule.type, rule.category, priority, tuple(rule.channels))
    cap = current_app.config["MARKETING_CAP_PER_HOUR"]
    renderer = _renderer(template)

    notifications, deliveries, claim_updates, inbox = [], [], [], []
    counts = {"sent": 0, "waiting": 0, "expired": 0, "suppressed": 0}
    for claim in batch:
        person, verdict = claim.person, verdicts[claim.id]
        if verdict == windows.WAIT:
            counts["waiting"] += 1
            continue
        if verdict == windows.EXPIRE:
            claim_updates.append({"id": claim.id, "status": EXPIRED, "reason": OUTSIDE_WINDOW, "sent_at": None, "notification_id": None})
            counts["expired"] += 1
            continue
        decisions = routing.route(note, facts[person.id], now, cap)
        if all(d.action == routing.SUPPRESS for d in decisions):
            claim_updates.append({"id": claim.id, "status": CLAIM_SUPPRESSED, "reason": decisions[0].reason,
                                  "sent_at": None, "notification_id": None})
            counts["suppressed"] += 1
            continue
        key = windows.idempotency_key(rule.id, person.id, claim.local_date)
        notification = {
            "id": notification_id_for(key), "recipient_id": person.id, "type": rule.type, "category": rule.category,
            "priority": priority, "template_key": rule.template_key, "template_version": template.current_version if template else None,
            "title": None, "body": None, "data": {"rule_id": rule.id, "local_date": claim.local_date.isoformat()},
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
                    if renderer is None:
                        raise RenderError("in_app", "template", f"the rule's template {rule.template_key!r} no longer exists")
                    content = renderer.render("in_app", person.locale, person.context(notification))
                except RenderError as error:
                    row.update(status=FAILED, error_code="render_error", last_error=str(error))
                else:
                    notification.update(title=content.get("title"), body=content.get("body"), inbox_at=now)
                    row.update(status=DELIVERED, provider="herald", attempts=1, dispatched_at=now, delivered_at=now)
                    inbox.append((person.id, notification["id"], content.get("title")))
            deliveries.append(row)
        notifications.append(notification)
        claim_updates.append({"id": claim.id, "status": SENT, "reason": None, "sent_at": now, "notification_id": notification["id"]})
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
    if rule.type == "marketing":
        routed = {d.notification_id for d in created if d.status in (PENDING, DELIVERED)}
        record_marketing_sends({n["recipient_id"]: n["id"] for n in notifications if n["id"] in routed}, now)
    _hand_over(rule, [d for d in created if d.status == PENDING and d.channel != "in_app"], priority)
    return counts


def _hand_over(rule: Rule, pending, priority: str) -> None:
    """External deliveries go to batch jobs (one job per batch, never one per recipient).

    Deliveries deferred past quiet hours wait in one job per minute of release
    and go through :func:`dispatch_batch` too, so the window is checked again then.
    """
    from jobs.delivery import enqueue
    from jobs.rules import dispatch_rule_deliveries

    by_time: dict[datetime | None, list[int]] = defaultdict(list)
    for delivery in pending:
        at = delivery.not_before
        if at is not None and (at.second or at.microsecond):
            at = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
        by_time[at].append(delivery.id)
    size = current_app.config["RULES_SEND_BATCH"]
    for at, ids in by_time.items():
        for start in range(0, len(ids), size):
            enqueue(dispatch_rule_deliveries, rule.id, ids[start:start + size], priority=priority, at=at)


# -- external channels -------------------------------------------------------------------------

def _late_and_versions(rule: Rule, delivery_ids: list[int], now: datetime) -> tuple[list[int], dict[int | None, list[int]]]:
    """Deliveries whose recipient is, in their *current* zone, outside the window now; and the others,
    grouped by the template version their notification was made with."""
    rows = db.session.execute(
        select(Delivery.id, Notification.template_version, RuleSend.local_date, Recipient.timezone, Recipient.attributes)
        .join(Notification, Notification.id == Delivery.notification_id)
        .join(RuleSend, RuleSend.notification_id == Notification.id)
        .join(Recipient, Recipient.id == Notification.recipient_id)
        .where(Delivery.id.in_(delivery_ids))
    ).all()
    late, by_version = [], defaultdict(list)
    for delivery_id, version, period, zone, attributes in rows:
        verdict = windows.recheck(now, period, zone, (attributes or {}).get("country"), rule.window_start, rule.window_end,
                                  rule.every_days, rule.no_timezone_policy)
        if verdict == windows.SEND:
            by_version[version].append(delivery_id)
        else:
            late.append(delivery_id)
    return late, by_version


def _rule_sender(rule: Rule, renderer: VersionRenderer, priority: str, counts: dict[str, int]) -> Sender:
    def requeue(delivery_ids: list[int], at: datetime) -> None:
        from jobs.delivery import enqueue
        from jobs.rules import dispatch_rule_deliveries

        enqueue(dispatch_rule_deliveries, rule.id, delivery_ids, priority=priority, at=at)

    def tally(changed: dict[str, int]) -> None:
        for name, count in changed.items():
            name = "sent" if name.startswith("sent:") else name
            counts[name] = counts.get(name, 0) + count

    return Sender(renderer, priority, requeue, tally)


def dispatch_batch(rule: Rule, delivery_ids: list[int], now: datetime | None = None) -> dict[str, int]:
    """Send a batch of the rule's external deliveries: re-check each recipient's window, then send the rest
    through :func:`app.batch_send.send_channel` (claim in chunks, send, record).

    Idempotent: only due deliveries are claimed (PENDING, or SENDING whose
    lease ran out), so a re-run or a re-drive sends nothing twice.
    """
    now = now or utcnow()
    late, by_version = _late_and_versions(rule, delivery_ids, now)
    counts = {"sent": 0, "failed": 0, "late": 0, "busy": 0}
    if late:
        suppressed = db.session.execute(
            update(Delivery).where(Delivery.id.in_(late), due(now))
            .values(status=SUPPRESSED, reason=OUTSIDE_WINDOW, updated_at=now).returning(Delivery.id)).scalars().all()
        insert_rows(DeliveryEvent, [{"delivery_id": d, "status": SUPPRESSED, "detail": OUTSIDE_WINDOW, "created_at": now}
                                    for d in suppressed])
        counts["late"] = len(suppressed)
    db.session.commit()
    template = db.session.scalar(select(Template).where(Template.key == rule.template_key))
    priority = effective_priority(rule.type, rule.priority)
    external = [c for c in rule.channels if c != "in_app"]
    for version, ids in by_version.items():
        if template is None or version is None or template.version(version) is None:
            renderer = VersionRenderer({}, "en")  # every render fails: recorded as render_error, never sent blank
        else:
            renderer = renderer_for(template, version)
        sender = _rule_sender(rule, renderer, priority, counts)
        for channel in external:
            if not send_channel(sender, channel, Delivery.id.in_(ids), {}, now):
                counts["busy"] += len(ids)  # every slot of the channel is taken: the same batch, a little later
                sender.requeue(ids, utcnow() + timedelta(seconds=1 + random.random()))
                break
    return counts
