"""Campaign fan-out: one job turns ~1000 recipients into notifications and deliveries, set-based, then hands
the deliveries to the one pipeline (:func:`app.pipeline.deliver.deliver`).

A batch run is idempotent and may be repeated at any point (a worker killed
mid-batch, RQ's retry, a resume):

1. notifications are inserted ``ON CONFLICT DO NOTHING`` on the unique
   (campaign, recipient) index, deliveries on (notification, channel): a
   re-run inserts nothing twice; each notification's origin is
   ``campaign:<id>``;
2. routing is the pipeline's own :func:`~app.pipeline.facts.route_people`
   over facts loaded for the whole batch in a handful of queries;
3. the due deliveries go to the pipeline, which re-checks the campaign
   (paused: they wait; cancelled or ended: SUPPRESSED) before every channel,
   claims, sends and records them; quiet-hours deliveries wait in one job per
   minute of release.

Progress counters (Redis hash per campaign) only count rows this run changed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import insert, or_, select, update

from app.audiences.filters import compile_filter
from app.campaigns import progress
from app.channels import in_send_order, inbox_channel
from app.delivery import routing
from app.delivery.constants import FAILED, PENDING, SENDING, SUPPRESSED
from app.delivery.priority import effective_priority
from app.delivery.rendering import RenderError, VersionRenderer, renderer_for
from app.extensions import db
from app.models import Campaign, CampaignBatch, Delivery, DeliveryEvent, Notification, Recipient, Template
from app.models.bulk import among, insert_ignoring_conflicts, insert_returning, insert_rows
from app.models.campaigns import BATCH_CANCELLED, BATCH_DONE, BATCH_PENDING, CANCELLED, PAUSED, RUNNING
from app.models.notifications import new_notification_id
from app.models.types import utcnow
from app.pipeline import origin
from app.pipeline.content import inline_renderer
from app.pipeline.deliver import deliver
from app.pipeline.facts import PERSON_COLUMNS, Person, record_marketing_sends, render_context, route_people
from app.redis_client import get_redis
from app.tasks import deliver_later

log = logging.getLogger(__name__)

ENDED = origin.CAMPAIGN_ENDED
CANCELLED_REASON = origin.CAMPAIGN_CANCELLED
# SQLite allows 32766 bound parameters per statement; deliveries have 12 columns.
DELIVERY_CHUNK = 2000
# What a batch reads back from the deliveries it inserted (ON CONFLICT DO NOTHING: only the ones it created).
CREATED_COLUMNS = (Delivery.id, Delivery.status, Delivery.reason, Delivery.last_error, Delivery.not_before)


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
    template: Template | None  # None: an API run with literal title/body
    renderer: VersionRenderer
    channels: list[str]
    note: routing.NotificationFacts
    priority: str
    content: dict  # type, category, title, body, data, collapse_key of every notification


def campaign_context(campaign: Campaign) -> Context:
    """A console campaign's template says what it is; an API run's ``content`` says it (app/campaigns/runs.py)."""
    template = db.session.get(Template, campaign.template_id) if campaign.template_id is not None else None
    channels = in_send_order(campaign.channels)
    if campaign.content is None:
        priority = effective_priority(template.type, "low" if template.type == "marketing" else "normal")
        content = {
            "type": template.type,
            "category": template.category,
            "title": None,
            "body": None,
            "data": {},
            "collapse_key": None,
        }
    else:
        content = campaign.content
        priority = content["priority"]
    renderer = (
        renderer_for(template, campaign.template_version)
        if template is not None
        else inline_renderer(content["title"], content["body"])
    )
    return Context(
        campaign,
        template,
        renderer,
        channels,
        routing.NotificationFacts(content["type"], content["category"], priority, tuple(channels)),
        priority,
        content,
    )


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
        notification_ids, due = create_rows(ctx, people, now, ended)
        report = deliver(due if due is not None else due_deliveries(list(notification_ids.values()), now))
        if campaign_status(campaign_id) == CANCELLED:
            _close_batch(batch, BATCH_CANCELLED)
            progress.finish_if_complete(campaign_id)
            return "cancelled"
        if report.counts["paused"]:
            return "paused"  # the batch stays pending and resume enqueues it again
    _close_batch(batch, BATCH_DONE)
    progress.finish_if_complete(campaign_id)
    return "done"


def due_deliveries(notification_ids: list[str], now: datetime) -> list[int]:
    """The batch's deliveries the pipeline may take now (quiet-hours ones wait in their own jobs)."""
    return (
        db.session.execute(
            select(Delivery.id)
            .where(
                among(Delivery.notification_id, notification_ids),
                Delivery.status.in_((PENDING, SENDING)),
                or_(Delivery.not_before.is_(None), Delivery.not_before <= now),
            )
            .order_by(Delivery.id)
        )
        .scalars()
        .all()
    )


def create_rows(ctx: Context, people: list[Person], now: datetime, ended: bool) -> tuple[dict[int, str], list | None]:
    """Insert the batch's notifications and routed deliveries (idempotently); returns recipient -> notification id,
    and the deliveries due now when this run created them all (None on a re-run: the caller asks the database)."""
    campaign = ctx.campaign
    decisions = (
        {p.id: [routing.Decision(c, routing.SUPPRESS, ENDED) for c in ctx.channels] for p in people}
        if ended
        else route_people(ctx.note, people, now)
    )
    notification_rows, failures = notification_rows_for(ctx, people, now)
    ids, inserted = _insert_notifications(campaign.id, people, notification_rows, now)
    delivery_rows = delivery_rows_for(people, decisions, ids, failures, now)
    created = [
        row
        for start in range(0, len(delivery_rows), DELIVERY_CHUNK)
        for row in insert_returning(
            Delivery, delivery_rows[start : start + DELIVERY_CHUNK], ["notification_id", "channel"], CREATED_COLUMNS
        )
    ]
    counts, deferred = _record_created_deliveries(created, now)
    db.session.commit()

    pipe = get_redis().pipeline(transaction=False)
    progress.add(pipe, campaign.id, {**counts, "notified": inserted} if inserted else counts)
    pipe.execute()
    if created and ctx.note.type == "marketing":
        record_marketing_sends(
            {p.id: ids[p.id] for p in people if any(d.action != routing.SUPPRESS for d in decisions[p.id])}, now
        )
    schedule_deferred(ctx.priority, deferred)
    if len(created) < len(delivery_rows):
        return ids, None
    return ids, sorted(d.id for d in created if d.status == PENDING and (d.not_before is None or d.not_before <= now))


def _insert_notifications(
    campaign_id: int, people: list[Person], notification_rows: list[dict], now: datetime
) -> tuple[dict[int, str], int]:
    """Insert the batch's notifications; (recipient -> notification id, how many this run inserted)."""
    # Rows this run created carry this run's ``now``: that tells them apart from a previous run's.
    inserted = insert_ignoring_conflicts(Notification, notification_rows, ["campaign_id", "recipient_id"])
    if inserted == len(notification_rows):
        return {row["recipient_id"]: row["id"] for row in notification_rows}, inserted
    # a re-run: the first run's rows and ids stand
    existing = db.session.execute(
        select(Notification.recipient_id, Notification.id, Notification.created_at).where(
            Notification.campaign_id == campaign_id, among(Notification.recipient_id, [p.id for p in people])
        )
    ).all()
    ids = {recipient_id: notification_id for recipient_id, notification_id, _at in existing}
    return ids, sum(1 for _r, _n, created_at in existing if created_at == now)


def routed_status(decision: routing.Decision, render_error: str | None) -> tuple[str, str | None]:
    """(status, reason) of a routed delivery: suppressed as routed, else pending, or failed if it cannot render."""
    status, reason = SUPPRESSED if decision.action == routing.SUPPRESS else PENDING, decision.reason
    if render_error and status == PENDING:
        return FAILED, None
    return status, reason


def delivery_rows_for(
    people: list[Person],
    decisions: dict[int, list[routing.Decision]],
    ids: dict[int, str],
    failures: dict[tuple[int, str], str],
    now: datetime,
) -> list[dict]:
    """One delivery row per routed (recipient, channel), with its status decided by :func:`routed_status`."""
    rows = []
    for person in people:
        for decision in decisions[person.id]:
            error = failures.get((person.id, decision.channel))
            status, reason = routed_status(decision, error)
            rows.append(
                {
                    "notification_id": ids[person.id],
                    "channel": decision.channel,
                    "status": status,
                    "reason": reason,
                    "not_before": decision.not_before,
                    "attempts": 0,
                    "error_code": "render_error" if status == FAILED else None,
                    "last_error": error if status == FAILED else None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    return rows


def _record_created_deliveries(created: list, now: datetime) -> tuple[dict[str, int], dict[datetime, list[int]]]:
    """Events for the deliveries this run created (suppressed, failed, deferred); their progress counts and the
    deferred ones by release time."""
    counts: dict[str, int] = defaultdict(int)
    deferred: dict[datetime, list[int]] = defaultdict(list)
    events = []
    for delivery_id, status, reason, last_error, not_before in created:
        if status == SUPPRESSED:
            counts[f"suppressed:{reason}"] += 1
            events.append({"delivery_id": delivery_id, "status": SUPPRESSED, "detail": reason, "created_at": now})
        elif status == FAILED:
            counts["failed"] += 1
            events.append(
                {
                    "delivery_id": delivery_id,
                    "status": FAILED,
                    "detail": f"render_error: {last_error}",
                    "created_at": now,
                }
            )
        elif not_before is not None:
            deferred[not_before].append(delivery_id)
            events.append(
                {
                    "delivery_id": delivery_id,
                    "status": PENDING,
                    "detail": f"deferred until {not_before.isoformat()} (quiet_hours)",
                    "created_at": now,
                }
            )
    insert_rows(DeliveryEvent, events)
    return counts, deferred


def notification_rows_for(ctx: Context, people: list[Person], now: datetime) -> tuple[list[dict], dict]:
    """The batch's notification rows (origin ``campaign:<id>``), with the in-app content rendered into them
    (the inbox shows the stored title/body; literal title/body is stored as sent, like a single send's);
    and the (recipient, channel) pairs whose content would not render."""
    campaign, template, spec = ctx.campaign, ctx.template, ctx.content
    notification_rows, failures = [], {}
    for person in people:
        row = {
            "id": new_notification_id(),
            "recipient_id": person.id,
            "type": spec["type"],
            "category": spec["category"],
            "priority": ctx.priority,
            "template_key": template and template.key,
            "template_version": campaign.template_version,
            "title": spec["title"],
            "body": spec["body"],
            "data": spec["data"],
            "collapse_key": spec["collapse_key"],
            "channels": ctx.channels,
            "status": "routed",
            "created_at": now,
            "routed_at": now,
            "campaign_id": campaign.id,
            "origin": origin.of_campaign(campaign.id),
        }
        if inbox_channel() in ctx.channels and template is not None:
            # The inbox shows the stored title/body, so the in-app variant is rendered into the row.
            try:
                content = ctx.renderer.render(
                    inbox_channel(), person.locale, render_context(person, SimpleNamespace(**row))
                )
                row["title"], row["body"] = content["title"], content["body"]
            except RenderError as error:
                failures[(person.id, inbox_channel())] = str(error)
        notification_rows.append(row)
    return notification_rows, failures


def schedule_deferred(priority: str, deferred: dict[datetime, list[int]]) -> None:
    """Quiet-hours deliveries go in one job per minute of release (and per 1000), never one job per delivery."""
    by_minute: dict[datetime, list[int]] = defaultdict(list)
    for at, delivery_ids in deferred.items():
        minute = at.replace(second=0, microsecond=0) + (
            timedelta(minutes=1) if at.second or at.microsecond else timedelta(0)
        )
        by_minute[minute].extend(delivery_ids)
    for at, delivery_ids in sorted(by_minute.items()):
        deliver_later(delivery_ids, priority, at)


# -- stopping ----------------------------------------------------------------------------------


def cancel_pending(campaign_id: int) -> int:
    """Nothing unsent goes out after a cancel: PENDING deliveries become SUPPRESSED campaign_cancelled.

    (The pipeline re-checks the campaign before every send too, so a delivery queued elsewhere is caught there.)
    """
    now = utcnow()
    scope = Delivery.notification_id.in_(select(Notification.id).where(Notification.campaign_id == campaign_id))
    stopped = (
        db.session.execute(
            update(Delivery)
            .where(scope, Delivery.status == PENDING)
            .values(status=SUPPRESSED, reason=CANCELLED_REASON, updated_at=now)
            .returning(Delivery.id)
        )
        .scalars()
        .all()
    )
    if stopped:
        db.session.execute(
            insert(DeliveryEvent),
            [{"delivery_id": d, "status": SUPPRESSED, "detail": CANCELLED_REASON, "created_at": now} for d in stopped],
        )
    db.session.commit()
    if stopped:
        pipe = get_redis().pipeline(transaction=False)
        progress.add(pipe, campaign_id, {f"suppressed:{CANCELLED_REASON}": len(stopped)})
        pipe.execute()
    return len(stopped)


def _close_batch(batch: CampaignBatch, status: str) -> None:
    db.session.execute(
        update(CampaignBatch)
        .where(CampaignBatch.id == batch.id, CampaignBatch.status == BATCH_PENDING)
        .values(status=status, done_at=utcnow())
    )
    db.session.commit()
