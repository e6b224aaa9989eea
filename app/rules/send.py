"""From claims to notifications: the send side of a daily rule, in batches, re-drivable after a crash.

A claim (``rule_sends`` row, status ``claimed``) becomes, in ONE transaction:
a notification whose id is derived from the claim's key
(``rule:{rule}:{recipient}:{local_date}``) and whose origin is
``rule:<id>``, one delivery per channel (routing decisions read live: an
opt-out after the claim suppresses it), and the claim marked ``sent``. In-app
lands in that same transaction: its row is inserted already delivered and its
notification in the inbox (:func:`app.channels.in_app.landed_row`; the INSERT
is the claim), then the open pages are told. External channels (push, SMS,
email...) go to the one pipeline in batch jobs of ``RULES_SEND_BATCH``. The
provider idempotency key ``herald-{notification id}-{channel}`` is derived
from the claim key too.

A crash before the commit leaves the claim ``claimed``: the next evaluation
re-drives it with the same key (the inserts are ON CONFLICT DO NOTHING on
that derived id), it never claims again. A crash after the commit and before
the hand-over leaves PENDING external deliveries, which the maintenance
reaper hands to the pipeline.

The recipient's local time is checked again with their *current* zone
(:func:`app.rules.windows.recheck`) when the claim is sent, and the pipeline
checks it again before each delivery is sent, however late that is (quiet
hours, a retry, a re-drive, a dead-letter retry): outside the window it is
SUPPRESSED ``outside_send_window`` (:mod:`app.pipeline.origin`). Outside the
window a claim is left ``claimed`` for the next evaluation inside the window,
and once the claim's local day is over for them it is marked ``expired``.
Nothing is sent late.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import NamedTuple

from flask import current_app
from sqlalchemy import select

from app.channels import channel_class, inbox_channel
from app.channels.in_app import announce, land_on_insert, landed_entries, landing_event, record_landing
from app.delivery import routing
from app.delivery.constants import DELIVERED, FAILED, PENDING, SUPPRESSED
from app.delivery.priority import effective_priority
from app.delivery.rendering import RenderError, VersionRenderer, renderer_for
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Notification, Recipient, Rule, RuleSend, Template
from app.models.bulk import among, insert_ignoring_conflicts, insert_returning, insert_rows, update_by_id
from app.models.rules import CLAIMED, EXPIRED, SENT
from app.models.rules import SUPPRESSED as CLAIM_SUPPRESSED
from app.models.types import utcnow
from app.pipeline import origin
from app.pipeline.deliver import deliver
from app.pipeline.facts import PERSON_COLUMNS, Person, record_marketing_sends, render_context, route_people
from app.rules import windows
from app.tasks import deliver_later

log = logging.getLogger(__name__)

NOTIFICATION_NAMESPACE = uuid.UUID("3f0e4a53-5b1c-4a7e-9d7c-6d0b2a1f7e11")
OUTSIDE_WINDOW = origin.OUTSIDE_WINDOW
# A batch's deliveries as the hand-over reads them (from the INSERT's RETURNING, or read back on a re-drive).
PENDING_COLUMNS = (
    Delivery.id,
    Delivery.notification_id,
    Delivery.channel,
    Delivery.status,
    Delivery.not_before,
    Delivery.delivered_at,
)


def notification_id_for(key: str) -> str:
    """Same claim key -> same notification id, so a re-drive can only insert it once."""
    return uuid.uuid5(NOTIFICATION_NAMESPACE, key).hex


class Claim(NamedTuple):
    id: int
    local_date: date
    person: Person


def _pending_batch(rule: Rule, after_id: int, size: int) -> list[Claim]:
    """The next claims still ``claimed``, with their recipients (plain rows: half the cost of ORM objects)."""
    query = (
        select(RuleSend.id, RuleSend.local_date, *PERSON_COLUMNS)
        .join(Recipient, Recipient.id == RuleSend.recipient_id)
        .where(RuleSend.rule_id == rule.id, RuleSend.status == CLAIMED, RuleSend.id > after_id)
        .order_by(RuleSend.id)
        .limit(size)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        # A second evaluator running at the same moment takes other claims instead of waiting on these.
        query = query.with_for_update(skip_locked=True, of=RuleSend)
    return [Claim(row[0], row[1], Person(*row[2:])) for row in db.session.execute(query)]


def send_claims(rule: Rule, now: datetime, batch_size: int | None = None) -> dict[str, int]:
    """Send every pending claim of ``rule`` (fresh ones and those a crash left behind), batch by batch."""
    config = current_app.config
    batch_size = batch_size or config["RULES_SEND_BATCH"]
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
    return totals


def _renderer(template: Template | None) -> VersionRenderer | None:
    if template is None or template.version() is None:
        return None
    return renderer_for(template, template.current_version)


def _recheck(rule: Rule, claim: Claim, now: datetime) -> str:
    """The claim's window verdict now, with the recipient's current zone (:func:`app.rules.windows.recheck`)."""
    person = claim.person
    return windows.recheck(
        now,
        claim.local_date,
        person.timezone,
        (person.attributes or {}).get("country"),
        rule.window_start,
        rule.window_end,
        rule.every_days,
        rule.no_timezone_policy,
    )


def claim_outcome(verdict: str, decisions: list[routing.Decision] | None) -> str:
    """What a claim comes to: ``waiting`` (its window opens later), ``expired`` (its local day is over),
    ``suppressed`` (routing suppressed every channel) or ``sent``. ``decisions`` are read only for SEND."""
    if verdict == windows.WAIT:
        return "waiting"
    if verdict == windows.EXPIRE:
        return "expired"
    if all(d.action == routing.SUPPRESS for d in decisions):
        return "suppressed"
    return "sent"


def _claim_update(
    claim: Claim,
    status: str,
    reason: str | None = None,
    sent_at: datetime | None = None,
    notification_id: str | None = None,
) -> dict:
    """A ``rule_sends`` row's new values, for :func:`app.models.bulk.update_by_id`."""
    return {"id": claim.id, "status": status, "reason": reason, "sent_at": sent_at, "notification_id": notification_id}


def _send_batch(rule: Rule, template: Template | None, batch: list[Claim], now: datetime) -> dict[str, int]:
    verdicts = {claim.id: _recheck(rule, claim, now) for claim in batch}
    sendable = [claim.person for claim in batch if verdicts[claim.id] == windows.SEND]
    priority = effective_priority(rule.type, rule.priority)
    note = routing.NotificationFacts(rule.type, rule.category, priority, tuple(rule.channels))
    decisions = route_people(note, sendable, now) if sendable else {}
    renderer = _renderer(template)
    shared = _shared_columns(rule, template, priority, now)

    notifications, deliveries, claim_updates = [], [], []
    counts = {"sent": 0, "waiting": 0, "expired": 0, "suppressed": 0}
    for claim in batch:
        person, verdict = claim.person, verdicts[claim.id]
        outcome = claim_outcome(verdict, decisions.get(person.id))
        counts[outcome] += 1
        if outcome == "expired":
            claim_updates.append(_claim_update(claim, EXPIRED, OUTSIDE_WINDOW))
        elif outcome == "suppressed":
            claim_updates.append(_claim_update(claim, CLAIM_SUPPRESSED, decisions[person.id][0].reason))
        elif outcome == "sent":
            notification = _notification_row(shared, rule.id, claim)
            deliveries += _delivery_rows(rule, renderer, notification, person, decisions[person.id], now)
            notifications.append(notification)
            claim_updates.append(_claim_update(claim, SENT, None, now, notification["id"]))

    # Checked at this batch's ``now``: in-app lands as it is inserted, stamped with the clock as it is written.
    land_on_insert(notifications, deliveries, utcnow())
    created = _insert_notifications(rule, notifications, deliveries, now) if notifications else []
    landed = landed_entries(created, notifications)
    record_landing(landed)
    update_by_id(RuleSend, claim_updates)
    if rule.type == "marketing":
        routed = {d.notification_id for d in created if d.status in (PENDING, DELIVERED)}
        record_marketing_sends({n["recipient_id"]: n["id"] for n in notifications if n["id"] in routed}, now)
    db.session.commit()
    announce(landed)

    # A crash here leaves the claims sent and the external deliveries PENDING: the maintenance reaper hands
    # them to the pipeline. A re-drive (rows an earlier run wrote) hands over what that run left PENDING.
    if len(created) == len(deliveries):
        pending = [d for d in created if d.status == PENDING]
    else:
        pending = _pending_deliveries([n["id"] for n in notifications])
    _hand_over(pending, priority)
    return counts


def _insert_notifications(rule: Rule, notifications: list[dict], deliveries: list[dict], now: datetime) -> list:
    """Insert the notifications and their deliveries (a re-drive inserts none twice), with an event per new
    delivery; returns the deliveries this run created."""
    insert_ignoring_conflicts(Notification, notifications, ["id"])
    created = insert_returning(Delivery, deliveries, ["notification_id", "channel"], PENDING_COLUMNS)
    events = []
    for d in created:
        detail = f"rule {rule.id}" + (f"; deferred until {d.not_before.isoformat()}" if d.not_before else "")
        if d.status == DELIVERED:
            events.append(landing_event(d.id, d.delivered_at, detail))
        else:
            events.append({"delivery_id": d.id, "status": d.status, "created_at": now, "detail": detail})
    insert_rows(DeliveryEvent, events)
    return created


def _pending_deliveries(notification_ids: list[str]) -> list:
    """The notifications' PENDING deliveries (this run's or a first run's), to hand to the pipeline."""
    if not notification_ids:
        return []
    return db.session.execute(
        select(*PENDING_COLUMNS).where(among(Delivery.notification_id, notification_ids), Delivery.status == PENDING)
    ).all()


def _shared_columns(rule: Rule, template: Template | None, priority: str, now: datetime) -> dict:
    """The columns every notification of a batch has in common (read from the rule once per batch)."""
    return {
        "type": rule.type,
        "category": rule.category,
        "priority": priority,
        "template_key": rule.template_key,
        "template_version": template.current_version if template else None,
        "title": None,
        "body": None,
        "channels": list(rule.channels),
        "collapse_key": f"rule-{rule.id}",
        "status": "routed",
        "created_at": now,
        "routed_at": now,
        "inbox_at": None,
        "origin": origin.of_rule(rule.id),
    }


def _notification_row(shared: dict, rule_id: int, claim: Claim) -> dict:
    key = windows.idempotency_key(rule_id, claim.person.id, claim.local_date)
    return {
        **shared,
        "id": notification_id_for(key),
        "recipient_id": claim.person.id,
        "data": {"rule_id": rule_id, "local_date": claim.local_date.isoformat()},
        "idempotency_key": key,
    }


def _delivery_rows(
    rule: Rule,
    renderer: VersionRenderer | None,
    notification: dict,
    person: Person,
    decisions: list[routing.Decision],
    now: datetime,
) -> list[dict]:
    """One row per channel; the in-app content is rendered into the notification (the inbox shows the row)."""
    rows, inbox = [], inbox_channel()
    for decision in decisions:
        row = {
            "notification_id": notification["id"],
            "channel": decision.channel,
            "status": PENDING,
            "reason": decision.reason,
            "not_before": decision.not_before,
            "attempts": 0,
            "provider": None,
            "claimed_at": None,
            "dispatched_at": None,
            "delivered_at": None,
            "last_error": None,
            "error_code": None,
            "created_at": now,
            "updated_at": now,
        }
        if decision.action == routing.SUPPRESS:
            row["status"] = SUPPRESSED
        elif decision.channel == inbox:
            try:
                if renderer is None:
                    raise RenderError(
                        decision.channel, "template", f"the rule's template {rule.template_key!r} no longer exists"
                    )
                content = renderer.render(
                    decision.channel, person.locale, render_context(person, _unrendered(notification))
                )
            except RenderError as error:
                row.update(status=FAILED, error_code="render_error", last_error=str(error))
            else:
                notification.update(title=content.get("title"), body=content.get("body"))
        rows.append(row)
    return rows


class _Unrendered(NamedTuple):
    """What a template sees of a notification before its content is rendered (:func:`render_context`)."""

    id: str
    type: str
    category: str
    data: dict
    title: None = None
    body: None = None


def _unrendered(notification: dict) -> _Unrendered:
    return _Unrendered(notification["id"], notification["type"], notification["category"], notification["data"])


def _hand_over(pending, priority: str) -> None:
    """External deliveries go to batch jobs (one job per batch, never one per recipient), deferred ones in one
    job per minute of release. In-app left PENDING by an earlier run goes to the pipeline at once."""
    inline, by_time = [], defaultdict(list)
    for delivery in pending:
        adapter = channel_class(delivery.channel)
        at = delivery.not_before
        if at is not None and (at.second or at.microsecond):
            at = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
        if at is None and adapter is not None and not adapter.external:
            inline.append(delivery.id)
        else:
            by_time[at].append(delivery.id)
    if inline:
        deliver(inline)
    size = current_app.config["RULES_SEND_BATCH"]
    for at, ids in by_time.items():
        deliver_later(ids, priority, at, chunk=size)
