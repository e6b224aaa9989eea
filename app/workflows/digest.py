"""The digest step: one open digest per (workflow, recipient, step, key), joined by a conditional UPDATE and
closed by another, so a trigger arriving while a digest fires either made it in before the close (and is read
with the members after it) or opens the next digest -- every trigger lands in exactly one.

The digest's owner fires it: one transaction that holds the owner's run (lease and status), moves the digest from
closed to fired and reads the members. Cancelling a member before that drops its trigger; cancelling the owner
hands the role to the oldest member still standing in the cancel's own transaction (``hand_over``), or drops the
digest when none is left. Once fired with several members the owner's run carries them all
(``carries_digest_id``) and a cancel no longer stops it: one trigger cannot take the others' digest with it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, insert, select, update

from app.extensions import db
from app.models import DigestPreference, Recipient, Template, WorkflowDigest, WorkflowRun, WorkflowStepRun
from app.models.workflows import CANCELLED, RUNNING, STOPPED
from app.workflows import digest_frequency
from app.workflows import results as steps

OPEN, CLOSED, FIRED, DROPPED = "open", "closed", "fired", "dropped"
UNFIRED = (OPEN, CLOSED)
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
    """Each member's trigger data, oldest first, leaving out cancelled runs: read after the close committed, so no
    join is missed."""
    return [
        data or {}
        for data in db.session.scalars(
            select(WorkflowRun.data)
            .join(WorkflowStepRun, WorkflowStepRun.run_id == WorkflowRun.id)
            .where(WorkflowStepRun.digest_id == digest_id, WorkflowRun.status != CANCELLED)
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
        if not _fire(ctx, row):
            return None
    return steps.Next()


def _fire(ctx, row: WorkflowStepRun) -> bool:
    """Fire the closed digest once, as its owner: lock the owner's run first (a cancel of it waits, then sees
    ``carries_digest_id``), then the digest (a hand-over waits, then finds it fired). False when this run is not
    the owner any more (cancelled, its role handed over) or lost its lease."""
    held = db.session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == ctx.run.id, WorkflowRun.lease_token == ctx.token, WorkflowRun.status == RUNNING)
        .values(updated_at=ctx.now)
    ).rowcount
    fired = (
        held
        and db.session.execute(
            update(WorkflowDigest)
            .where(
                WorkflowDigest.id == row.digest_id,
                WorkflowDigest.state == CLOSED,
                WorkflowDigest.owner_run_id == ctx.run.id,
            )
            .values(state=FIRED)
        ).rowcount
    )
    if not fired:
        db.session.rollback()
        return False
    context = digest_context(_members(row.digest_id))
    db.session.execute(update(WorkflowDigest).where(WorkflowDigest.id == row.digest_id).values(count=context["count"]))
    db.session.execute(
        update(WorkflowStepRun)
        .where(WorkflowStepRun.id == row.id, WorkflowStepRun.state == steps.WAITING)
        .values(state=steps.DONE, outcome="digested", detail=f"{context['count']} events", finished_at=ctx.now)
    )
    db.session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == ctx.run.id)
        .values(
            data={**(ctx.run.data or {}), **context},
            carries_digest_id=row.digest_id if context["count"] > 1 else None,
        )
    )
    db.session.commit()
    return True


def _lock_unfired(digest_id: int, states=UNFIRED) -> bool:
    """Take the digest's row lock if it has not fired (PostgreSQL: a firing holds it until its members are read, so
    a cancel either lands before the read -- its trigger left out -- or finds the digest fired)."""
    return bool(
        db.session.execute(
            update(WorkflowDigest)
            .where(WorkflowDigest.id == digest_id, WorkflowDigest.state.in_(states))
            .values(count=WorkflowDigest.count)
        ).rowcount
    )


def _digests_of(run_ids) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for digest_id, run_id in db.session.execute(
        select(WorkflowStepRun.digest_id, WorkflowStepRun.run_id)
        .where(WorkflowStepRun.run_id.in_(run_ids), WorkflowStepRun.digest_id.is_not(None))
        .order_by(WorkflowStepRun.digest_id)
    ):
        found.setdefault(digest_id, []).append(run_id)
    return found


def drop_joined(conditions, values: dict) -> int:
    """Cancel the runs matching ``conditions`` that stopped as they joined a digest not fired yet: their triggers
    drop out of it. Each digest is locked first, so a digest firing meanwhile keeps its members; one this cancel
    dropped (its owner and every member cancelled at once) counts its joiners out too."""
    joined = select(WorkflowRun.id).where(WorkflowRun.status == STOPPED, WorkflowRun.reason == "digested", *conditions)
    cancelled = 0
    for digest_id, run_ids in _digests_of(joined).items():
        if not _lock_unfired(digest_id, (*UNFIRED, DROPPED)):
            continue
        dropped = db.session.execute(
            update(WorkflowRun)
            .where(WorkflowRun.id.in_(run_ids), WorkflowRun.status == STOPPED, WorkflowRun.reason == "digested")
            .values(**values)
        ).rowcount
        db.session.execute(
            update(WorkflowDigest).where(WorkflowDigest.id == digest_id).values(count=WorkflowDigest.count - dropped)
        )
        cancelled += dropped
    return cancelled


def hand_over(cancelled_run_ids: list[int], conditions, now) -> tuple[int, list[tuple[int, datetime]]]:
    """In the cancel's transaction, after running runs were cancelled: each unfired digest they were in drops their
    triggers, and one they owned passes to its oldest member still standing and not among those being cancelled
    (``conditions``) -- revived to fire it (a fresh lease, so
    the worker that stopped it as a joiner changes nothing) -- or is dropped when no member is left. A run that had
    just joined a digest which fired meanwhile is put back: its trigger was digested. Returns how many of the runs
    stay cancelled, and the revived runs with when to advance them (queued after the commit)."""
    restored = 0
    woken = []
    for digest_id, run_ids in _digests_of(cancelled_run_ids).items():
        unfired = _lock_unfired(digest_id)
        digest = db.session.get(WorkflowDigest, digest_id, populate_existing=True)
        if not unfired:
            restored += db.session.execute(
                update(WorkflowRun)
                .where(WorkflowRun.id.in_(run_ids), WorkflowRun.id != digest.owner_run_id)
                .values(status=STOPPED, reason="digested")
            ).rowcount
            continue
        db.session.execute(
            update(WorkflowDigest)
            .where(WorkflowDigest.id == digest_id)
            .values(count=WorkflowDigest.count - len(run_ids))
        )
        if digest.owner_run_id in run_ids:
            revived = _pass_on(digest, conditions, now)
            if revived is not None:
                woken.append(revived)
    return len(cancelled_run_ids) - restored, woken


def _pass_on(digest: WorkflowDigest, conditions, now) -> tuple[int, datetime] | None:
    being_cancelled = set(db.session.scalars(select(WorkflowRun.id).where(*conditions)))
    members = db.session.execute(
        select(WorkflowStepRun.id, WorkflowStepRun.run_id)
        .join(WorkflowRun, WorkflowRun.id == WorkflowStepRun.run_id)
        .where(WorkflowStepRun.digest_id == digest.id, WorkflowRun.status != CANCELLED)
        .order_by(WorkflowStepRun.started_at, WorkflowStepRun.id)
    ).all()
    db.session.execute(
        update(WorkflowStepRun)
        .where(WorkflowStepRun.run_id == digest.owner_run_id, WorkflowStepRun.digest_id == digest.id)
        .values(state=steps.STOPPED, outcome="cancelled", finished_at=now)
    )
    at = digest.closes_at if digest.state == OPEN else now
    for step_row_id, run_id in members:
        if run_id in being_cancelled:
            continue
        revived = db.session.execute(
            update(WorkflowRun)
            .where(WorkflowRun.id == run_id, WorkflowRun.status.in_((RUNNING, STOPPED)))
            .values(
                status=RUNNING,
                reason=None,
                finished_at=None,
                lease_token=None,
                current_step=digest.step_index,
                next_at=at,
                updated_at=now,
            )
        ).rowcount
        if revived:
            db.session.execute(
                update(WorkflowStepRun)
                .where(WorkflowStepRun.id == step_row_id)
                .values(state=steps.WAITING, outcome=None, finished_at=None)
            )
            db.session.execute(update(WorkflowDigest).where(WorkflowDigest.id == digest.id).values(owner_run_id=run_id))
            return run_id, at
    db.session.execute(
        update(WorkflowDigest).where(WorkflowDigest.id == digest.id).values(state=DROPPED, closed_at=now)
    )
    return None
