"""The digest step: one open digest per (workflow, recipient, step, key), joined by a conditional UPDATE and
closed by another, so a trigger arriving while a digest fires either made it in before the close (and is read
with the members after it) or opens the next digest -- every trigger lands in exactly one."""

from __future__ import annotations

from sqlalchemy import and_, insert, select, update

from app.extensions import db
from app.models import DigestPreference, Recipient, Template, WorkflowDigest, WorkflowRun, WorkflowStepRun
from app.models.workflows import RUNNING
from app.workflows import digest_frequency
from app.workflows import results as steps

OPEN, CLOSED = "open", "closed"
MAX_ACTORS = 3


def key_value(step, data: dict) -> str:
    if step.key is None:
        return ""
    return str((data or {}).get(step.key[len("data.") :]))[:255]


def digest_context(events: list[dict]) -> dict:
    """What the next steps' templates see: ``data.events``, ``data.count``, ``data.actors``."""
    actors = []
    for event in events:
        actor = event.get("actor")
        if actor is not None and actor not in actors:
            actors.append(actor)
    return {"events": events, "count": len(events), "actors": actors[:MAX_ACTORS]}


def _open_digest(ctx, key: str):
    return (
        WorkflowDigest.workflow_id == ctx.run.workflow_id,
        WorkflowDigest.recipient_id == ctx.run.recipient_id,
        WorkflowDigest.step_index == ctx.index,
        WorkflowDigest.digest_key == key,
        WorkflowDigest.state == OPEN,
    )


def recipient_choice(ctx) -> tuple[str | None, bool, str | None]:
    """(the recipient's digest frequency, whether it is a security notice, their time zone) for the category of
    what this digest leads to: the template of the first sending step after it. One query."""
    template = next(
        (step.template for step in ctx.definition[ctx.index + 1 :] if step.kind in ("channel", "escalation")), None
    )
    if template is None:
        return None, False, None
    found = db.session.execute(
        select(DigestPreference.frequency, Template.type, Recipient.timezone)
        .select_from(Recipient)
        .join(Template, Template.key == template)
        .outerjoin(
            DigestPreference,
            and_(DigestPreference.recipient_id == Recipient.id, DigestPreference.category == Template.category),
        )
        .where(Recipient.id == ctx.run.recipient_id)
    ).first()
    if found is None:
        return None, False, None
    return found.frequency, found.type == "security", found.timezone


def digest_start(ctx) -> steps.Start:
    """Join the open digest (this run then stops there), or open one (this run continues with all of them). A
    recipient who chose ``off`` for the category gets a digest of one, closed as it opens: not held, still counted."""
    key = key_value(ctx.step, ctx.run.data)
    closes_at = digest_frequency.closes_at(*recipient_choice(ctx), ctx.step.window, ctx.now)
    if closes_at is None:
        return _digest_of_one(ctx, key)
    joined = db.session.execute(
        update(WorkflowDigest)
        .where(*_open_digest(ctx, key))
        .values(count=WorkflowDigest.count + 1)
        .returning(WorkflowDigest.id, WorkflowDigest.count, WorkflowDigest.max_events, WorkflowDigest.owner_run_id)
    ).first()
    if joined is not None:
        if joined.max_events is not None and joined.count >= joined.max_events:
            # Full: closed with this member in the same transaction (the next trigger opens another digest), and
            # the opener looks now instead of at the window's end.
            db.session.execute(
                update(WorkflowDigest).where(WorkflowDigest.id == joined.id).values(state=CLOSED, closed_at=ctx.now)
            )
            db.session.execute(
                update(WorkflowRun)
                .where(
                    WorkflowRun.id == joined.owner_run_id, WorkflowRun.status == RUNNING, WorkflowRun.next_at > ctx.now
                )
                .values(next_at=ctx.now)
            )
        return steps.Start(steps.STOPPED, "digested", digest_id=joined.id)
    return steps.Start(steps.WAITING, "collecting", digest_id=_insert_digest(ctx, key, OPEN, closes_at))


def _insert_digest(ctx, key: str, state: str, closes_at) -> int:
    return db.session.execute(
        insert(WorkflowDigest)
        .values(
            workflow_id=ctx.run.workflow_id,
            recipient_id=ctx.run.recipient_id,
            step_index=ctx.index,
            digest_key=key,
            state=state,
            owner_run_id=ctx.run.id,
            count=1,
            max_events=ctx.step.max_events,
            opened_at=ctx.now,
            closes_at=closes_at,
            closed_at=ctx.now if state == CLOSED else None,
        )
        .returning(WorkflowDigest.id)
    ).scalar_one()


def _digest_of_one(ctx, key: str) -> steps.Start:
    """Closed from the start (the unique index covers open digests only), so nothing joins it; the run's follow
    reads its one member and continues at once."""
    return steps.Start(steps.WAITING, "collecting", digest_id=_insert_digest(ctx, key, CLOSED, ctx.now))


def _members(digest_id: int) -> list[dict]:
    """Each member's trigger data, oldest first: read after the close committed, so no join is missed."""
    return [
        data or {}
        for data in db.session.scalars(
            select(WorkflowRun.data)
            .join(WorkflowStepRun, WorkflowStepRun.run_id == WorkflowRun.id)
            .where(WorkflowStepRun.digest_id == digest_id)
            .order_by(WorkflowStepRun.started_at, WorkflowStepRun.id)
        )
    ]


def digest_follow(ctx, row: WorkflowStepRun):
    if row.state == steps.STOPPED:
        return steps.Stop("digested")
    if row.state == steps.WAITING:
        digest = db.session.get(WorkflowDigest, row.digest_id)
        if digest.state == OPEN:
            full = digest.max_events is not None and digest.count >= digest.max_events
            if ctx.now < digest.closes_at and not full:
                db.session.commit()
                return steps.Wait(digest.closes_at)
            db.session.execute(
                update(WorkflowDigest)
                .where(WorkflowDigest.id == digest.id, WorkflowDigest.state == OPEN)
                .values(state=CLOSED, closed_at=ctx.now)
            )
            db.session.commit()
        context = digest_context(_members(row.digest_id))
        settled = db.session.execute(
            update(WorkflowStepRun)
            .where(WorkflowStepRun.id == row.id, WorkflowStepRun.state == steps.WAITING)
            .values(state=steps.DONE, outcome="digested", detail=f"{context['count']} events", finished_at=ctx.now)
        ).rowcount
        if settled:
            data = {**(ctx.run.data or {}), **context}
            db.session.execute(update(WorkflowRun).where(WorkflowRun.id == ctx.run.id).values(data=data))
        db.session.commit()
    return steps.Next()
