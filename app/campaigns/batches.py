"""A launched campaign's batches: plan the audience into batches once, queue their jobs.

Launch enqueues ``jobs.campaigns.plan_campaign`` (normal queue). Planning
walks the audience by keyset pages over ``Recipient.id`` -- ``WHERE filter
AND id > last ORDER BY id LIMIT n`` -- records one ``CampaignBatch`` per
page and queues one ``jobs.campaigns.run_batch`` job per batch, pipelined
(future waves through the scheduled registry, same pipeline). Batch jobs go
to the low queue, so a million-recipient campaign never delays a
transactional notification.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from app import tasks
from app.broadcasts.launch import launch_if_broadcast
from app.campaigns import planning, progress
from app.campaigns.fanout import audience_condition
from app.extensions import db
from app.models import Campaign, CampaignBatch, Recipient
from app.models.bulk import insert_ignoring_conflicts
from app.models.campaigns import BATCH_PENDING, PAUSED, RUNNING, SEND_LOCAL
from app.models.types import utcnow

BATCH_QUEUE = "low"
PLAN_QUEUE = "normal"


def keyset_pages(condition, size: int):
    """(first id, last id, count) per page of at most ``size`` matching recipients, in id order."""
    last = 0
    while True:
        ids = (
            db.session.execute(
                select(Recipient.id).where(condition, Recipient.id > last).order_by(Recipient.id).limit(size)
            )
            .scalars()
            .all()
        )
        if not ids:
            return
        yield ids[0], ids[-1], len(ids)
        last = ids[-1]


def plan_batches(campaign: Campaign, now: datetime) -> list[dict]:
    """The batch rows of a campaign: keyset pages, one wave per time zone for local-time schedules."""
    condition = audience_condition(campaign, now)
    size = planning.batch_size(campaign.throttle_per_minute)
    pages: list[tuple[datetime, bool, str | None, tuple[int, int, int]]] = []
    if campaign.schedule == SEND_LOCAL:
        zones = (
            db.session.execute(select(Recipient.timezone).where(condition).group_by(Recipient.timezone)).scalars().all()
        )
        for wave in planning.plan_waves(list(zones), campaign.local_time, now):
            for zone in wave.zones:
                zone_condition = Recipient.timezone.is_(None) if zone is None else Recipient.timezone == zone
                pages += [(wave.at, True, zone, page) for page in keyset_pages(condition & zone_condition, size)]
    else:
        start = planning.first_send_time(campaign.schedule, campaign.send_at, now)
        pages = [(start, False, None, page) for page in keyset_pages(condition, size)]
    run_times = planning.spaced_run_times([p[0] for p in pages], [p[3][2] for p in pages], campaign.throttle_per_minute)
    rows = []
    for seq, ((_start, by_zone, zone, (first, last, count)), run_at) in enumerate(zip(pages, run_times, strict=True)):
        if campaign.ends_at is not None and run_at > campaign.ends_at:
            run_at = campaign.ends_at  # runs at the end only to record its recipients as campaign_ended
        rows.append(
            {
                "campaign_id": campaign.id,
                "seq": seq,
                "first_id": first,
                "last_id": last,
                "size": count,
                "by_zone": by_zone,
                "zone": zone,
                "run_at": run_at,
                "status": BATCH_PENDING,
            }
        )
    return rows


def plan_campaign(campaign_id: int) -> int:
    """Record the campaign's batches once, then enqueue every pending one. Safe to re-run."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or campaign.status not in (RUNNING, PAUSED):
        return 0  # planning sends nothing, so a pause does not stop it; the batches check the pause
    exists = db.session.scalar(select(CampaignBatch.id).where(CampaignBatch.campaign_id == campaign_id).limit(1))
    if exists is None and launch_if_broadcast(campaign, utcnow()):
        return 0  # stored once, fanned out on read (app/broadcasts/); it stays running until cancelled
    if exists is None:
        rows = plan_batches(campaign, utcnow())
        for start in range(0, len(rows), 1000):
            insert_ignoring_conflicts(CampaignBatch, rows[start : start + 1000], ["campaign_id", "seq"])
        planned = db.session.scalar(
            select(func.coalesce(func.sum(CampaignBatch.size), 0)).where(CampaignBatch.campaign_id == campaign_id)
        )
        db.session.execute(
            update(Campaign).where(Campaign.id == campaign_id).values(planned=planned, updated_at=utcnow())
        )
        db.session.commit()
        progress.set_status(campaign_id, campaign.status, planned=planned)
    count = enqueue_pending_batches(campaign_id)
    if count == 0:
        progress.finish_if_complete(campaign_id)
    return count


def batch_queue(content: dict | None) -> str:
    """Console campaigns and marketing fan out on the low queue; any other API run (a topic send: "your team
    commented") on its priority's queue, so it does not wait behind a million-recipient newsletter."""
    if content is None or content.get("type") == "marketing":
        return BATCH_QUEUE
    return {"critical": "high", "high": "high", "normal": "normal"}.get(content.get("priority"), BATCH_QUEUE)


def enqueue_pending_batches(campaign_id: int) -> int:
    """One job per pending batch, pipelined: due ones queued now, later waves in the scheduled registry."""
    queue = batch_queue(db.session.scalar(select(Campaign.content).where(Campaign.id == campaign_id)))
    batches = db.session.execute(
        select(CampaignBatch.id, CampaignBatch.run_at)
        .where(CampaignBatch.campaign_id == campaign_id, CampaignBatch.status == BATCH_PENDING)
        .order_by(CampaignBatch.seq)
    ).all()
    db.session.commit()
    tasks.enqueue_all(
        "jobs.campaigns.run_batch", [((campaign_id, batch_id), run_at) for batch_id, run_at in batches], priority=queue
    )
    return len(batches)


def enqueue_plan(campaign_id: int) -> None:
    tasks.enqueue("jobs.campaigns.plan_campaign", campaign_id, priority=PLAN_QUEUE)
