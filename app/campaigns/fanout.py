"""Campaign fan-out: one job turns ~1000 recipients into notifications, deliveries and sends, set-based.

A batch run is idempotent and may be repeated at any point (a worker killed
mid-batch, RQ's retry, a resume):

1. notifications are inserted ``ON CONFLICT DO NOTHING`` on the unique
   (campaign, recipient) index, deliveries on (notification, channel): a
   re-run inserts nothing twice;
2. routing is the pipeline's own pure ``route`` over facts loaded for the
   whole batch in a handful of queries;
3. in-app is one conditional UPDATE (PENDING -> DELIVERED, RETURNING the
   winners) plus pipelined realtime publishes; every other channel is
   claimed set-based (PENDING -> SENDING, RETURNING the winners), committed,
   then sent through its adapter, then recorded in bulk (:mod:`app.batch_send`,
   shared with daily rules). Claim, then send, then record -- as for single notifications, with the
   same provider idempotency key, so a claim left by a crash is re-driven
   after its lease, never sent twice.

Pause and cancel are read at the start of a batch and between channels. Progress
counters (Redis hash per campaign) only count rows this run changed.
"""
from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, insert, select, update

from app.audiences.filters import compile_filter
from app.batch_send import PERSON_COLUMNS, Person, Sender, due, load_facts, record_marketing_sends, send_channel
from app.campaigns import progress
from app.delivery import routing
from app.delivery.constants import DELIVERED, DISPATCHED, FAILED, PENDING, SENDING, SUPPRESSED
from app.delivery.priority import effective_priority
from app.delivery.rendering import RenderError, VersionRenderer, renderer_for
from app.extensions import db
from app.models.bulk import insert_ignoring_conflicts
from app.models import Campaign, CampaignBatch, Delivery, DeliveryEvent, Notification, Recipient, Template
from app.models.campaigns import BATCH_CANCELLED, BATCH_DONE, BATCH_PENDING, CANCELLED, FINISHED, PAUSED, RUNNING
from app.models.notifications import new_notification_id
from app.models.types import utcnow
from app.realtime.publish import publish_to_user
from app.redis_client import get_redis

log = logging.getLogger(__name__)

CHANNEL_ORDER = ("in_app", "push", "web_push", "sms", "email")
ENDED = "campaign_ended"
CANCELLED_REASON = "campaign_cancelled"
# SQLite allows 32766 bound parameters per statement; deliveries have 12 columns.
DELIVERY_CHUNK = 2000


# -- loading the batch -------------------------------------------------------------------------

def audience_condition(campaign: Campaign, now: datetime):
    return compile_filter(campaign.audience_filter, db.session.get_bind().dialect.name, now)


def load_batch_people(campaign: Campaign, batch: CampaignBatch, now: datetime) -> list[Person]:
    conditions = [audience_condition(campaign, now), Recipient.id >= batch.first_id, Recipient.id <= batch.last_id]
    if batch.by_zone:
        conditions.append(Recipient.timezone.is_(None) if batch.zone is None else Recipient.timezone == batch.zone)
    rows = db.session.execute(select(*PERSON_COLUMNS).where(*conditions).order_by(Recipient.id)).all()
    return [Person(*row) for row in rows]



# -- the batch ---------------------------------------------------------------------------------

@dataclass
class Context:
    """What every step of one campaign run needs, loaded once."""

    campaign: Campaign
    template: Template
    renderer: VersionRenderer
    channels: list[str]
    note: routing.NotificationFacts
    priority: str

    def sender(self) -> Sender:
        campaign_id = self.campaign.id

        def requeue(delivery_ids: list[int], at: datetime) -> None:
            from jobs.campaigns import enqueue_deliveries

            enqueue_deliveries(campaign_id, delivery_ids, at)

        def tally(counts: dict[str, int]) -> None:
            pipe = get_redis().pipeline(transaction=False)
            progress.add(pipe, campaign_id, counts)
            pipe.execute()

        return Sender(self.renderer, self.priority, requeue, tally)


def campaign_context(campaign: Campaign) -> Context:
    template = db.session.get(Template, campaign.template_id)
    channels = [c for c in CHANNEL_ORDER if c in campaign.channels]
    priority = effective_priority(template.type, "low" if template.type == "marketing" else "normal")
    return Context(campaign, template, renderer_for(template, campaign.template_version), channels,
                   routing.NotificationFacts(template.type, template.category, priority, tuple(channels)), priority)


def campaign_status(campaign_id: int) -> str | None:
    """Read live (not from the session's identity map), so a pause lands between channels."""
    return db.session.execute(select(Campaign.status).where(Campaign.id == campaign_id)).scalar()


def run_batch(campaign_id: int, batch_id: int) -> str:
    """Fan one batch out. Returns what happened, for logs and tests."""
    now = utcnow()
    batch = db.session.get(CampaignBatch, batch_id)
    campaign = db.session.get(Campaign, campaign_id)
    if batch is None or campaign is None or batch.campaign_id != campaign_id:
        return "missing"
    if batch.status != BATCH_PENDING:
        return "already-" + batch.status
    if campaign.status == CANCELLED:
        _close_batch(batch, BATCH_CANCELLED)
        return "cancelled"
    if campaign.status == PAUSED:
        db.session.rollback()
        return "paused"
    if campaign.status != RUNNING:
        return "not-running"
    ctx = campaign_context(campaign)
    people = load_batch_people(campaign, batch, now)
    ended = campaign.ends_at is not None and now >= campaign.ends_at
    if people:
        notification_ids = create_rows(ctx, people, now, ended)
        outcome = send_pending(ctx, people_by_id={p.id: p for p in people}, notification_ids=notification_ids)
        if outcome == "waiting":  # every slot of a channel is busy: the whole batch comes back (it is idempotent)
            from jobs.campaigns import enqueue_batch

            enqueue_batch(campaign_id, batch_id, utcnow() + timedelta(seconds=1 + random.random()))
            return outcome
        if outcome == "cancelled":
            _close_batch(batch, BATCH_CANCELLED)
            finish_if_complete(campaign_id)
            return outcome
        if outcome != "sent":
            return outcome  # paused: the batch stays pending and resume enqueues it again
    _close_batch(batch, BATCH_DONE)
    finish_if_complete(campaign_id)
    return "done"


def create_rows(ctx: Context, people: list[Person], now: datetime, ended: bool) -> dict[int, str]:
    """Insert the batch's notifications and routed deliveries (idempotently); returns recipient -> notification id."""
    campaign, template = ctx.campaign, ctx.template
    if ended:
        decisions = {p.id: [routing.Decision(c, routing.SUPPRESS, ENDED) for c in ctx.channels] for p in people}
    else:
        facts = load_facts(people, ctx.channels, template.type == "marketing", now)
        cap = current_app.config["MARKETING_CAP_PER_HOUR"]
        decisions = {p.id: routing.route(ctx.note, facts[p.id], now, cap) for p in people}

    notification_rows, failures = [], {}
    for person in people:
        row = {"id": new_notification_id(), "recipient_id": person.id, "type": template.type,
               "category": template.category, "priority": ctx.priority, "template_key": template.key,
               "template_version": campaign.template_version, "title": None, "body": None, "data": {},
               "channels": ctx.channels, "status": "routed", "created_at": now, "routed_at": now,
               "campaign_id": campaign.id}
        if "in_app" in ctx.channels:
            # The inbox shows the stored title/body, so the in-app variant is rendered into the row.
            try:
                content = ctx.renderer.render("in_app", person.locale, person.context(row))
                row["title"], row["body"] = content["title"], content["body"]
            except RenderError as error:
                failures[(person.id, "in_app")] = str(error)
        notification_rows.append(row)
    # Rows this run created carry this run's ``now``: that tells them apart from a previous run's.
    inserted = insert_ignoring_conflicts(Notification, notification_rows, ["campaign_id", "recipient_id"])
    if inserted == len(notification_rows):
        ids = {row["recipient_id"]: row["id"] for row in notification_rows}
    else:  # a re-run: the first run's rows and ids stand
        existing = db.session.execute(select(Notification.recipient_id, Notification.id, Notification.created_at).where(
            Notification.campaign_id == campaign.id, Notification.recipient_id.in_([p.id for p in people]))).all()
        ids = {recipient_id: notification_id for recipient_id, notification_id, _at in existing}
        inserted = sum(1 for _r, _n, created_at in existing if created_at == now)

    delivery_rows = []
    for person in people:
        for decision in decisions[person.id]:
            status, reason = SUPPRESSED if decision.action == routing.SUPPRESS else PENDING, decision.reason
            error = failures.get((person.id, decision.channel))
            if error and status == PENDING:
                status, reason = FAILED, None
            delivery_rows.append({"notification_id": ids[person.id], "channel": decision.channel, "status": status,
                                  "reason": reason, "not_before": decision.not_before, "attempts": 0,
                                  "error_code": "render_error" if status == FAILED else None,
                                  "last_error": error if status == FAILED else None,
                                  "created_at": now, "updated_at": now})
    created = sum(insert_ignoring_conflicts(Delivery, delivery_rows[start:start + DELIVERY_CHUNK], ["notification_id", "channel"])
                  for start in range(0, len(delivery_rows), DELIVERY_CHUNK))
    counts: dict[str, int] = defaultdict(int)
    deferred: dict[datetime, list[int]] = defaultdict(list)
    if created:
        query = select(Delivery.id, Delivery.status, Delivery.reason, Delivery.last_error, Delivery.not_before).where(
            Delivery.notification_id.in_(list(ids.values())), Delivery.created_at == now)
        events = []
        for delivery_id, status, reason, last_error, not_before in db.session.execute(query):
            if status == SUPPRESSED:
                counts[f"suppressed:{reason}"] += 1
                events.append({"delivery_id": delivery_id, "status": SUPPRESSED, "detail": reason, "created_at": now})
            elif status == FAILED:
                counts["failed"] += 1
                events.append({"delivery_id": delivery_id, "status": FAILED, "detail": f"render_error: {last_error}",
                               "created_at": now})
            elif not_before is not None:
                deferred[not_before].append(delivery_id)
                events.append({"delivery_id": delivery_id, "status": PENDING,
                               "detail": f"deferred until {not_before.isoformat()} (quiet_hours)", "created_at": now})
        if events:
            db.session.execute(insert(DeliveryEvent), events)
    db.session.commit()

    pipe = get_redis().pipeline(transaction=False)
    progress.add(pipe, campaign.id, {**counts, "notified": inserted} if inserted else counts)
    pipe.execute()
    if created and template.type == "marketing":
        record_marketing_sends({p.id: ids[p.id] for p in people if any(d.action != routing.SUPPRESS for d in decisions[p.id])}, now)
    schedule_deferred(campaign.id, deferred)
    return ids


def schedule_deferred(campaign_id: int, deferred: dict[datetime, list[int]]) -> None:
    """Quiet-hours deliveries go in one job per minute of release (and per 1000), never one job per delivery."""
    from jobs.campaigns import enqueue_deliveries

    by_minute: dict[datetime, list[int]] = defaultdict(list)
    for at, delivery_ids in deferred.items():
        minute = at.replace(second=0, microsecond=0) + (timedelta(minutes=1) if at.second or at.microsecond else timedelta(0))
        by_minute[minute].extend(delivery_ids)
    for at, delivery_ids in sorted(by_minute.items()):
        for start in range(0, len(delivery_ids), 1000):
            enqueue_deliveries(campaign_id, delivery_ids[start:start + 1000], at)


# -- sending -----------------------------------------------------------------------------------

def _stopped(campaign_id: int) -> str | None:
    status = campaign_status(campaign_id)
    return status if status in (PAUSED, CANCELLED) else None


def send_pending(ctx: Context, people_by_id: dict[int, Person], notification_ids: dict[int, str] | None = None,
                 delivery_ids: list[int] | None = None) -> str:
    """Send the batch's due PENDING deliveries (or the given ones), channel by channel.

    Returns "sent", "paused", "cancelled" or "waiting" (a channel was busy; the caller's job was re-queued).
    """
    campaign_id = ctx.campaign.id
    for channel in ctx.channels:
        stopped = _stopped(campaign_id)
        if stopped == CANCELLED:
            cancel_pending(campaign_id, notification_ids, delivery_ids)
            return "cancelled"
        if stopped:
            return "paused"
        now = utcnow()
        if ctx.campaign.ends_at is not None and now >= ctx.campaign.ends_at:
            end_pending(campaign_id, notification_ids, delivery_ids, now)
            return "sent"
        scope = (Delivery.notification_id.in_(list(notification_ids.values())) if notification_ids is not None
                 else Delivery.id.in_(delivery_ids))
        if channel == "in_app":
            send_in_app(ctx, scope, now)
        elif not send_channel(ctx.sender(), channel, scope, people_by_id, now):
            return "waiting"
    return "sent"


def send_in_app(ctx: Context, scope, now: datetime) -> int:
    """The in-app send is a database row: one conditional UPDATE for the batch, then pipelined publishes."""
    won = db.session.execute(
        update(Delivery).where(scope, Delivery.channel == "in_app", due(now))
        .values(status=DELIVERED, provider="herald", attempts=Delivery.attempts + 1, claimed_at=now,
                dispatched_at=now, delivered_at=now, updated_at=now)
        .returning(Delivery.id, Delivery.notification_id)
    ).all()
    if not won:
        db.session.commit()
        return 0
    notification_ids = [n for _d, n in won]
    db.session.execute(update(Notification).where(Notification.id.in_(notification_ids), Notification.inbox_at.is_(None))
                       .values(inbox_at=now))
    db.session.execute(insert(DeliveryEvent), [{"delivery_id": d, "status": DELIVERED, "detail": "inbox", "created_at": now}
                                              for d, _n in won])
    rows = db.session.execute(select(Notification.id, Notification.recipient_id, Notification.title)
                              .where(Notification.id.in_(notification_ids))).all()
    db.session.commit()
    pipe = get_redis().pipeline(transaction=False)
    for notification_id, recipient_id, title in rows:
        publish_to_user(recipient_id, "notification", {"id": notification_id, "title": title,
                                                       "category": ctx.template.category},
                        event_id=notification_id, pipeline=pipe)
    progress.add(pipe, ctx.campaign.id, {"sent:in_app": len(won)})
    pipe.execute()
    return len(won)


def send_deliveries(campaign_id: int, delivery_ids: list[int]) -> str:
    """Send given deliveries of a campaign (quiet hours ended, a provider asked to wait). Idempotent."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        return "missing"
    if campaign.status == CANCELLED:
        cancel_pending(campaign_id, None, delivery_ids)
        return "cancelled"
    if campaign.status == PAUSED:
        from jobs.campaigns import enqueue_deliveries

        enqueue_deliveries(campaign_id, delivery_ids, utcnow() + timedelta(seconds=30))  # checked again later
        return "paused"
    ctx = campaign_context(campaign)
    outcome = send_pending(ctx, people_by_id={}, delivery_ids=delivery_ids)
    if outcome == "waiting":
        from jobs.campaigns import enqueue_deliveries

        enqueue_deliveries(campaign_id, delivery_ids, utcnow() + timedelta(seconds=1 + random.random()))
    finish_if_complete(campaign_id)
    return outcome


# -- stopping ----------------------------------------------------------------------------------

def _suppress_pending(campaign_id: int, notification_ids: dict[int, str] | None, delivery_ids: list[int] | None,
                      reason: str, now: datetime) -> int:
    if notification_ids is not None:
        scope = Delivery.notification_id.in_(list(notification_ids.values()))
    elif delivery_ids is not None:
        scope = Delivery.id.in_(delivery_ids)
    else:
        scope = Delivery.notification_id.in_(select(Notification.id).where(Notification.campaign_id == campaign_id))
    stopped = db.session.execute(
        update(Delivery).where(scope, Delivery.status == PENDING)
        .values(status=SUPPRESSED, reason=reason, updated_at=now).returning(Delivery.id)
    ).scalars().all()
    if stopped:
        db.session.execute(insert(DeliveryEvent), [{"delivery_id": d, "status": SUPPRESSED, "detail": reason,
                                                    "created_at": now} for d in stopped])
    db.session.commit()
    if stopped:
        pipe = get_redis().pipeline(transaction=False)
        progress.add(pipe, campaign_id, {f"suppressed:{reason}": len(stopped)})
        pipe.execute()
    return len(stopped)


def cancel_pending(campaign_id: int, notification_ids=None, delivery_ids=None) -> int:
    """Nothing unsent goes out after a cancel: PENDING deliveries become SUPPRESSED campaign_cancelled."""
    return _suppress_pending(campaign_id, notification_ids, delivery_ids, CANCELLED_REASON, utcnow())


def end_pending(campaign_id: int, notification_ids, delivery_ids, now: datetime) -> int:
    return _suppress_pending(campaign_id, notification_ids, delivery_ids, ENDED, now)


def _close_batch(batch: CampaignBatch, status: str) -> None:
    db.session.execute(update(CampaignBatch).where(CampaignBatch.id == batch.id, CampaignBatch.status == BATCH_PENDING)
                       .values(status=status, done_at=utcnow()))
    db.session.commit()


def finish_if_complete(campaign_id: int) -> bool:
    """A running campaign is finished once no batch waits and no delivery of it is still to be sent."""
    if db.session.scalar(select(CampaignBatch.id).where(CampaignBatch.campaign_id == campaign_id,
                                                        CampaignBatch.status == BATCH_PENDING).limit(1)) is not None:
        return False
    unsent = db.session.scalar(select(Delivery.id).join(Notification, Notification.id == Delivery.notification_id).where(
        Notification.campaign_id == campaign_id, Delivery.status.in_((PENDING, SENDING))).limit(1))
    if unsent is not None:
        return False
    now = utcnow()
    done = db.session.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status == RUNNING)
                              .values(status=FINISHED, finished_at=now, updated_at=now)).rowcount
    db.session.commit()
    if done:
        progress.set_status(campaign_id, FINISHED)
    return bool(done)


def delivery_counts(campaign_id: int) -> dict[str, int]:
    """The counters rebuilt from the database (when Redis lost them): same field names."""
    counts: dict[str, int] = {}
    rows = db.session.execute(
        select(Delivery.channel, Delivery.status, Delivery.reason, func.count())
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Notification.campaign_id == campaign_id)
        .group_by(Delivery.channel, Delivery.status, Delivery.reason)
    ).all()
    for channel, status, reason, count in rows:
        if status in (DISPATCHED, DELIVERED):
            field = f"sent:{channel}"
        elif status == SUPPRESSED:
            field = f"suppressed:{reason}"
        elif status == FAILED:
            field = "failed"
        else:
            continue
        counts[field] = counts.get(field, 0) + count
    counts["notified"] = db.session.scalar(select(func.count()).select_from(Notification)
                                           .where(Notification.campaign_id == campaign_id)) or 0
    return counts

