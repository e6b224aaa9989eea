"""API runs: a send to a topic or to a saved audience, fanned out by the campaign batch path.

A run is a :class:`~app.models.Campaign` the API makes and launches at once: its audience filter names the
topic (minus ``exclude``) or copies the saved audience, its ``content`` holds the request's type, category,
priority and literal title/body/data (or its template, pinned now). From there it is a campaign like any
other: planned in keyset pages, one batch job per ~1,000 recipients (:mod:`app.campaigns.fanout`), one
notification per recipient (origin ``campaign:<run id>``, unique per run and recipient), the same progress
counters, pause / resume / cancel and page in the console.

Idempotency is the single send's: the reservation names the run instead of a notification, so a replay
answers the same run and a different body is a conflict.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select

from app.accept import Accepted, UnknownTemplate, create_once
from app.campaigns import progress
from app.campaigns.batches import enqueue_plan
from app.channels import in_send_order
from app.delivery.priority import effective_priority
from app.extensions import db
from app.models import Broadcast, Campaign, CampaignBatch, Template
from app.models.campaigns import RUNNING, SEND_AT, SEND_NOW
from app.models.types import utcnow
from app.redis_outage import enqueue_or_leave_to_reaper
from app.schemas import NotificationCreate


def topic_filter(key: str, exclude: list[str] | None) -> dict:
    """The audience of a topic send: its subscribers, minus the excluded user ids."""
    conditions = [{"field": "topic", "op": "=", "value": key}]
    if exclude:
        conditions.append({"field": "external_id", "op": "not_in", "value": list(dict.fromkeys(exclude))})
    return {"all": conditions}


def _run_row(
    payload: NotificationCreate, template: Template | None, name: str, label: str, audience_filter: dict, now
) -> dict:
    return {
        "name": name[:255],
        "template_id": template.id if template else None,
        "template_version": template.current_version if template else None,
        "channels": in_send_order(payload.channels),
        "audience_filter": audience_filter,
        "audience_name": label[:255],
        "schedule": SEND_AT if payload.send_at else SEND_NOW,
        "send_at": payload.send_at,
        "status": RUNNING,
        "planned": 0,
        "created_at": now,
        "updated_at": now,
        "launched_at": now,
        "content": {
            "type": payload.type,
            "category": payload.category,
            "priority": effective_priority(payload.type, payload.priority),
            "title": payload.title,
            "body": payload.body,
            "data": payload.data,
            "collapse_key": payload.collapse_key,
        },
    }


def start_run(
    payload: NotificationCreate,
    *,
    name: str,
    label: str,
    audience_filter: dict,
    fingerprint: str,
    api_key_id: int | None,
    idempotency_key: str | None,
) -> Accepted:
    """Store the run (once per idempotency key) and queue its planning; the run id is what the caller is told."""
    template = None
    if payload.template:
        template = db.session.scalar(select(Template).where(Template.key == payload.template))
        if template is None or template.current_version is None:
            raise UnknownTemplate(payload.template)
    now = utcnow()

    def create() -> dict:
        row = _run_row(payload, template, name, label, audience_filter, now)
        return {"run_id": db.session.execute(insert(Campaign).values(**row).returning(Campaign.id)).scalar_one()}

    accepted = create_once(create, api_key_id, idempotency_key, fingerprint, now)
    if not accepted.replayed:
        enqueue_or_leave_to_reaper(_launch, accepted.run_id)
    return accepted


def _launch(run_id: int) -> None:
    progress.set_status(run_id, RUNNING, planned=0)
    enqueue_plan(run_id)


def relaunch_unplanned(stale: datetime) -> int:
    """Runs (and launched campaigns) stored while Redis was down have no batches and no planning job: the
    reaper queues their planning again (planning is safe to repeat). Returns how many."""
    has_batches = select(CampaignBatch.id).where(CampaignBatch.campaign_id == Campaign.id).exists()
    is_broadcast = select(Broadcast.id).where(Broadcast.campaign_id == Campaign.id).exists()
    ids = db.session.scalars(
        select(Campaign.id)
        .where(Campaign.status == RUNNING, Campaign.launched_at < stale, ~has_batches, ~is_broadcast)
        .limit(100)
    ).all()
    db.session.commit()
    for run_id in ids:
        _launch(run_id)
    return len(ids)
