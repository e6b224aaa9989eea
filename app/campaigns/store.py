"""What the console does with campaigns: save drafts, check, launch, pause, resume, cancel, read progress.

Every change writes an AuditEntry. State changes are conditional UPDATEs
(``WHERE status = <expected>``), so two staff clicking at once cannot launch
a campaign twice or resume a cancelled one. Test sends and what became of them
are in :mod:`app.campaigns.testsend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from sqlalchemy import func, select, update

from app.audiences.filters import compile_filter, validate_filter
from app.campaigns import planning, progress
from app.campaigns.batches import enqueue_pending_batches, enqueue_plan
from app.campaigns.fanout import cancel_pending
from app.channels import in_list_order, in_send_order
from app.delivery.constants import FAILED
from app.extensions import db
from app.models import (
    Audience,
    AuditEntry,
    Campaign,
    CampaignBatch,
    Delivery,
    Notification,
    Recipient,
    StaffUser,
    Template,
)
from app.models.campaigns import BATCH_CANCELLED, BATCH_PENDING, CANCELLED, DRAFT, PAUSED, RUNNING, SEND_AT, SEND_LOCAL
from app.models.types import utcnow
from app.render_checks import audience_failure


class CampaignStateError(Exception):
    """The campaign is not in a state that allows this (e.g. resume a cancelled one)."""


@dataclass
class CampaignFields:
    """A draft as the form gives it, already parsed."""

    name: str
    template_id: int
    audience_filter: dict
    audience_name: str | None
    channels: list[str]
    schedule: str
    send_at: datetime | None
    local_time: time | None
    throttle_per_minute: int | None
    ends_at: datetime | None


def snapshot(campaign: Campaign) -> dict:
    """The campaign as JSON, for audit entries."""
    return {
        "name": campaign.name,
        "template_id": campaign.template_id,
        "template_version": campaign.template_version,
        "channels": list(campaign.channels or []),
        "audience_filter": campaign.audience_filter,
        "audience_name": campaign.audience_name,
        "schedule": campaign.schedule,
        "send_at": campaign.send_at.isoformat() if campaign.send_at else None,
        "local_time": campaign.local_time.strftime("%H:%M") if campaign.local_time else None,
        "throttle_per_minute": campaign.throttle_per_minute,
        "ends_at": campaign.ends_at.isoformat() if campaign.ends_at else None,
        "status": campaign.status,
    }


def audit(actor: StaffUser, action: str, campaign: Campaign, before: dict | None, after: dict | None) -> None:
    """Add the AuditEntry for a change to ``campaign``; the caller commits it with the change."""
    db.session.add(
        AuditEntry(
            staff_user_id=actor.id,
            actor=actor.email,
            action=action,
            target_type="campaign",
            target_id=str(campaign.id),
            before=before,
            after=after,
            created_at=utcnow(),
        )
    )


# -- reading -----------------------------------------------------------------------------------


def list_campaigns(limit: int = 200) -> list[Campaign]:
    return db.session.scalars(
        select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id.desc()).limit(limit)
    ).all()


def templates() -> list[Template]:
    return db.session.scalars(select(Template).order_by(Template.name)).all()


def saved_audiences() -> list[Audience]:
    return db.session.scalars(select(Audience).order_by(Audience.name)).all()


def saved_audience(audience_id: int) -> Audience | None:
    return db.session.get(Audience, audience_id)


def template_channels(template: Template) -> list[str]:
    version = template.version()
    found = planning.template_channels(version.variants) if version else set()
    return in_list_order(found)


def audience_count(audience_filter: dict, now: datetime | None = None) -> int:
    condition = compile_filter(audience_filter, db.session.get_bind().dialect.name, now or utcnow())
    return db.session.scalar(select(func.count()).select_from(Recipient).where(condition)) or 0


def audience_is_empty(audience_filter: dict, now: datetime) -> bool:
    condition = compile_filter(audience_filter, db.session.get_bind().dialect.name, now)
    return db.session.scalar(select(Recipient.id).where(condition).limit(1)) is None


def launch_problems(campaign: Campaign, now: datetime | None = None) -> list[str]:
    """Why this campaign cannot launch now (empty when it can)."""
    now = now or utcnow()
    if campaign.status != DRAFT:
        return []
    template = db.session.get(Template, campaign.template_id)
    version = template.version() if template else None
    return planning.launch_problems(
        audience_count=0 if audience_is_empty(campaign.audience_filter, now) else 1,
        variants=version.variants if version else None,
        default_locale=template.default_locale if template else "en",
        channels=list(campaign.channels or []),
        schedule=campaign.schedule,
        send_at=campaign.send_at,
        local_time=campaign.local_time,
        ends_at=campaign.ends_at,
        now=now,
    )


def engagement(campaign_id: int) -> tuple[int, int]:
    """(read, clicked): the campaign's notifications read in the inbox, and those whose link was followed."""
    read, clicked = db.session.execute(
        select(func.count(Notification.read_at), func.count(Notification.clicked_at)).where(
            Notification.campaign_id == campaign_id
        )
    ).one()
    return int(read or 0), int(clicked or 0)


def campaign_progress(campaign: Campaign, with_engagement: bool = True) -> planning.Progress:
    if campaign.status == DRAFT:
        return planning.progress_from_counters({})
    counters = progress.read(campaign.id, campaign.status, campaign.planned)
    counters.setdefault("planned", campaign.planned)
    read, clicked = engagement(campaign.id) if with_engagement else (0, 0)
    return planning.progress_from_counters(counters, read=read, clicked=clicked)


def waves(campaign: Campaign, limit: int = 50) -> list[tuple[datetime, int, int]]:
    """(run at, batches, recipients) per distinct batch time, for the page."""
    rows = db.session.execute(
        select(CampaignBatch.run_at, func.count(), func.sum(CampaignBatch.size))
        .where(CampaignBatch.campaign_id == campaign.id)
        .group_by(CampaignBatch.run_at)
        .order_by(CampaignBatch.run_at)
        .limit(limit)
    ).all()
    return [(at, int(count), int(size or 0)) for at, count, size in rows]


# -- writing -----------------------------------------------------------------------------------


def validate_fields(fields: CampaignFields) -> dict[str, list[str]]:
    """Problems per form field that the form's own validators cannot see."""
    errors: dict[str, list[str]] = {}
    problems = validate_filter(fields.audience_filter)
    if problems:
        errors["audience_filter"] = problems
    template = db.session.get(Template, fields.template_id)
    if template is None:
        errors["template_id"] = ["Choose a template."]
    else:
        offered = template_channels(template)
        extra = [c for c in fields.channels if c not in offered]
        if extra:
            errors["channels"] = [
                f"The template has no variant for {', '.join(extra)}; it offers {', '.join(offered) or 'none'}."
            ]
    if not fields.channels:
        errors.setdefault("channels", []).append("Choose at least one channel.")
    if fields.schedule == SEND_AT and fields.send_at is None:
        errors["send_at"] = ["Give the UTC date and time to send at."]
    if fields.schedule == SEND_LOCAL and fields.local_time is None:
        errors["local_time"] = ["Give the local time of day to send at."]
    return errors


def _apply(campaign: Campaign, fields: CampaignFields) -> None:
    campaign.name = fields.name.strip()
    campaign.template_id = fields.template_id
    campaign.audience_filter = fields.audience_filter
    campaign.audience_name = fields.audience_name
    campaign.channels = in_send_order(fields.channels)
    campaign.schedule = fields.schedule
    campaign.send_at = fields.send_at if fields.schedule == SEND_AT else None
    campaign.local_time = fields.local_time if fields.schedule == SEND_LOCAL else None
    campaign.throttle_per_minute = fields.throttle_per_minute or None
    campaign.ends_at = fields.ends_at


def create_campaign(fields: CampaignFields, actor: StaffUser) -> Campaign:
    campaign = Campaign(status=DRAFT, planned=0, created_by=actor.id)
    _apply(campaign, fields)
    db.session.add(campaign)
    db.session.flush()
    audit(actor, "campaign.create", campaign, None, snapshot(campaign))
    db.session.commit()
    return campaign


def update_campaign(campaign: Campaign, fields: CampaignFields, actor: StaffUser) -> Campaign:
    if campaign.status != DRAFT:
        raise CampaignStateError("Only a draft can be edited; this campaign has been launched.")
    before = snapshot(campaign)
    _apply(campaign, fields)
    audit(actor, "campaign.update", campaign, before, snapshot(campaign))
    db.session.commit()
    return campaign


def _transition(
    campaign: Campaign, expected: tuple[str, ...], values: dict, action: str, actor: StaffUser, verb: str
) -> None:
    before = snapshot(campaign)
    now = utcnow()
    changed = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id, Campaign.status.in_(expected))
        .values(**values, updated_at=now)
    ).rowcount
    if not changed:
        db.session.rollback()
        db.session.refresh(campaign)
        raise CampaignStateError(f"This campaign is {campaign.status}; it cannot be {verb} now.")
    db.session.refresh(campaign)
    audit(actor, action, campaign, before, snapshot(campaign))
    db.session.commit()
    progress.set_status(campaign.id, campaign.status)


def launch(campaign: Campaign, actor: StaffUser, now: datetime | None = None) -> list[str]:
    """Launch now, or return the reasons it cannot. Pins the template's current version, once it has rendered
    for a sample of the audience on every channel (with the ``data`` ``{}`` the batches send)."""
    now = now or utcnow()
    problems = launch_problems(campaign, now)
    if campaign.status != DRAFT:
        problems = [f"This campaign is already {campaign.status}."]
    if problems:
        return problems
    template = db.session.get(Template, campaign.template_id)
    failure = audience_failure(
        template, template.current_version, campaign.audience_filter, list(campaign.channels or []), {}, now
    )
    if failure is not None:
        return [f"{failure}. Fix the template (or the audience) and launch again."]
    _transition(
        campaign,
        (DRAFT,),
        {"status": RUNNING, "template_version": template.current_version, "launched_at": now},
        "campaign.launch",
        actor,
        "launched",
    )
    progress.set_status(campaign.id, RUNNING, planned=0)
    enqueue_plan(campaign.id)
    return []


def pause(campaign: Campaign, actor: StaffUser) -> None:
    """Batches check the status when they start and between channels; what is running finishes its channel."""
    _transition(campaign, (RUNNING,), {"status": PAUSED}, "campaign.pause", actor, "paused")


def resume(campaign: Campaign, actor: StaffUser) -> None:
    """Batches that saw the pause are still pending: enqueue them again. Sent rows are never sent again."""
    _transition(campaign, (PAUSED,), {"status": RUNNING}, "campaign.resume", actor, "resumed")
    enqueue_pending_batches(campaign.id)


def cancel(campaign: Campaign, actor: StaffUser) -> None:
    """Stops everything not yet sent: pending batches are closed, pending deliveries suppressed."""
    _transition(
        campaign,
        (DRAFT, RUNNING, PAUSED),
        {"status": CANCELLED, "finished_at": utcnow()},
        "campaign.cancel",
        actor,
        "cancelled",
    )
    db.session.execute(
        update(CampaignBatch)
        .where(CampaignBatch.campaign_id == campaign.id, CampaignBatch.status == BATCH_PENDING)
        .values(status=BATCH_CANCELLED, done_at=utcnow())
    )
    db.session.commit()
    cancel_pending(campaign.id)


@dataclass(frozen=True)
class FailureGroup:
    error_code: str
    count: int
    example: str | None


def failure_groups(campaign_id: int, limit: int = 20) -> list[FailureGroup]:
    """The campaign's failed deliveries by error code, most frequent first, each with one example message."""
    rows = db.session.execute(
        select(Delivery.error_code, func.count(), func.min(Delivery.last_error))
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Notification.campaign_id == campaign_id, Delivery.status == FAILED)
        .group_by(Delivery.error_code)
        .order_by(func.count().desc(), Delivery.error_code)
        .limit(limit)
    ).all()
    return [FailureGroup(code or "unknown", int(count), example) for code, count, example in rows]
