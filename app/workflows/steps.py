"""What each kind of step does: ``start`` is its act, committed with the step's claim; ``follow`` reads the
step's row and says what the run does next (it may be called again for the same row: after a wait, or by the
worker that resumes a run a killed one left mid-step)."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.audiences.filters import compile_filter
from app.campaigns.planning import local_wave_time
from app.extensions import db
from app.models import Recipient, WorkflowRun, WorkflowStepRun
from app.models.bulk import insert_ignoring_conflicts
from app.models.workflows import RUNNING
from app.workflows import acts, digest
from app.workflows.data_filter import matches_data
from app.workflows.facts import DONE as REACHED_UNTIL
from app.workflows.facts import (
    EXHAUSTED,
    NEXT,
    Decision,
    Facts,
    escalation_move,
    facts_of,
    outcome_test,
    step_failed_at,
)
from app.workflows.results import DONE, SKIPPED, STOPPED, WAITING, Context, Next, Start, Stop, Wait


def poll_seconds() -> int:
    return current_app.config["WORKFLOW_POLL_SECONDS"]


def take(ctx: Context):
    """Next / Wait / Stop for the run, or None when the run is no longer this worker's (cancelled, lease lost)."""
    row = _row(ctx.run.id, ctx.index)
    if row is None:
        row = _claim(ctx)
        if row is None:
            return None
    return FOLLOW[ctx.step.kind](ctx, row)


def _row(run_id: int, index: int) -> WorkflowStepRun | None:
    """The step's row as read now, detached: later commits do not reload it (read it again to see changes)."""
    row = db.session.scalar(
        select(WorkflowStepRun).where(WorkflowStepRun.run_id == run_id, WorkflowStepRun.step_index == index)
    )
    if row is not None:
        db.session.expunge(row)
    db.session.commit()
    return row


def _claim(ctx: Context) -> WorkflowStepRun | None:
    """Insert the (run, step) row and the step's act in one transaction, while this worker holds the run. An act
    that loses a race on a unique key (two digests opened at once) is tried again: it then finds the winner's."""
    for _attempt in range(3):
        try:
            return _claim_once(ctx)
        except IntegrityError:
            db.session.rollback()
    return None


def _claim_once(ctx: Context) -> WorkflowStepRun | None:
    held = db.session.execute(
        update(WorkflowRun)
        .where(
            WorkflowRun.id == ctx.run.id,
            WorkflowRun.lease_token == ctx.token,
            WorkflowRun.status == RUNNING,
            WorkflowRun.current_step == ctx.index,
        )
        .values(updated_at=ctx.now)
    ).rowcount
    if not held:
        db.session.rollback()
        return None
    start = START[ctx.step.kind](ctx)
    row = {
        "run_id": ctx.run.id,
        "step_index": ctx.index,
        "kind": ctx.step.kind,
        "state": start.state,
        "outcome": start.outcome,
        "phase": start.phase,
        "sent": start.sent,
        "wait_until": start.wait_until,
        "detail": start.detail,
        "digest_id": start.digest_id,
        "started_at": ctx.now,
        "finished_at": None if start.state == WAITING else ctx.now,
    }
    if insert_ignoring_conflicts(WorkflowStepRun, [row], ["run_id", "step_index"]):
        for notification in start.notifications:
            acts.store_notification(notification)
        return _row(ctx.run.id, ctx.index)  # read in the claim's transaction, which its commit ends
    db.session.rollback()  # taken by another worker: its act stands, this one's is undone
    return _row(ctx.run.id, ctx.index)


def _settle(row: WorkflowStepRun, phase: int, state: str, outcome: str, now: datetime) -> WorkflowStepRun:
    """Record a waiting step's result once, if it is still at the ``phase`` the decision was made on: the first to
    record it wins, everyone follows what was recorded."""
    db.session.execute(
        update(WorkflowStepRun)
        .where(WorkflowStepRun.id == row.id, WorkflowStepRun.state == WAITING, WorkflowStepRun.phase == phase)
        .values(state=state, outcome=outcome, finished_at=now)
    )
    db.session.commit()
    db.session.expire_all()
    return _row(row.run_id, row.step_index)


def _sent_entry(channel: str, notification: dict, now: datetime) -> dict:
    return {"channel": channel, "notification_id": notification["id"], "at": now.isoformat()}


def _send_start(ctx: Context, channel: str, state: str) -> Start:
    notification = acts.notification_for(ctx.run, ctx.index, channel, ctx.step.template, ctx.now)
    if notification is None:
        return Start(DONE, "failed", detail=f"template {ctx.step.template!r} no longer exists")
    return Start(state, "sent", [_sent_entry(channel, notification, ctx.now)], [notification], phase=1)


# -- channel -----------------------------------------------------------------------------------


def channel_start(ctx: Context) -> Start:
    return _send_start(ctx, ctx.step.channel, DONE)


def channel_follow(ctx: Context, row: WorkflowStepRun):
    for entry in row.sent:
        acts.route_if_unrouted(entry["notification_id"])
    return Next()


# -- delay -------------------------------------------------------------------------------------


def delay_start(ctx: Context) -> Start:
    if ctx.step.seconds is not None:
        return Start(WAITING, wait_until=ctx.now + timedelta(seconds=ctx.step.seconds))
    zone = db.session.scalar(select(Recipient.timezone).where(Recipient.id == ctx.run.recipient_id))
    hours, minutes = (int(part) for part in ctx.step.until.split(":"))
    return Start(WAITING, wait_until=local_wave_time(time(hours, minutes), zone, ctx.now))


def delay_follow(ctx: Context, row: WorkflowStepRun):
    if row.state == WAITING:
        if ctx.now < row.wait_until:
            return Wait(row.wait_until)
        _settle(row, row.phase, DONE, "waited", ctx.now)
    return Next()


# -- condition ---------------------------------------------------------------------------------


def condition_start(ctx: Context) -> Start:
    return Start(WAITING)


def _evaluate(ctx: Context) -> Decision:
    step = ctx.step
    if step.data is not None:
        return Decision(matches_data(step.data, ctx.run.data or {}))
    if step.recipient is not None:
        dialect = db.session.get_bind().dialect.name
        found = db.session.scalar(
            select(Recipient.id).where(
                Recipient.id == ctx.run.recipient_id, compile_filter(step.recipient, dialect, ctx.now)
            )
        )
        return Decision(found is not None)
    target = _row(ctx.run.id, step.step)
    if target is None or not target.sent:
        return Decision(False)  # the step sent nothing (its template had gone): no outcome will come
    facts = facts_of([entry["notification_id"] for entry in target.sent])
    sent = [facts.get(entry["notification_id"], Facts()) for entry in target.sent]
    if step.outcome == "failed":
        exhausted_at = target.finished_at if target.outcome == "exhausted" else None
        happened = None if target.state == WAITING else step_failed_at(sent, exhausted_at)
    else:
        times = [f.at(step.outcome) for f in sent if f.at(step.outcome) is not None]
        happened = min(times) if times else None
    first_sent = datetime.fromisoformat(target.sent[0]["at"])
    return outcome_test(happened, first_sent, step.within, ctx.now, poll_seconds())


def condition_follow(ctx: Context, row: WorkflowStepRun):
    if row.state == WAITING:
        decision = _evaluate(ctx)
        if decision.holds is None:
            return Wait(decision.look_at)
        passed = decision.holds != ctx.step.negate
        state = DONE if passed else (STOPPED if ctx.step.otherwise == "stop" else SKIPPED)
        row = _settle(row, row.phase, state, "passed" if passed else "not_passed", ctx.now)
    if row.state == STOPPED:
        return Stop("condition")
    return Next(skip=1 if row.state == SKIPPED else 0)


# -- escalation --------------------------------------------------------------------------------


def escalation_start(ctx: Context) -> Start:
    return _send_start(ctx, ctx.step.channels[0].channel, WAITING)


def _escalate(ctx: Context, row: WorkflowStepRun, phase: int, sent: list[dict]) -> WorkflowStepRun:
    """Send on the next channel: the phase moves from k to k+1 in the same transaction, so once."""
    channel = ctx.step.channels[phase].channel
    notification = acts.notification_for(ctx.run, ctx.index, channel, ctx.step.template, ctx.now)
    if notification is None:
        return _settle(row, phase, DONE, "failed", ctx.now)  # its template was deleted since the definition was saved
    moved = db.session.execute(
        update(WorkflowStepRun)
        .where(WorkflowStepRun.id == row.id, WorkflowStepRun.state == WAITING, WorkflowStepRun.phase == phase)
        .values(phase=phase + 1, sent=[*sent, _sent_entry(channel, notification, ctx.now)])
    ).rowcount
    if moved:
        acts.store_notification(notification)
    db.session.commit()
    db.session.expire_all()
    return _row(row.run_id, row.step_index)


def escalation_follow(ctx: Context, row: WorkflowStepRun):
    while row.state == WAITING:
        # Read once (another worker may have moved the row on meanwhile): a decision made on what was read and
        # recorded on condition of it routes every notification it counts.
        phase, sent = row.phase, list(row.sent)
        for entry in sent:
            acts.route_if_unrouted(entry["notification_id"])
        last = sent[-1]
        facts = facts_of([last["notification_id"]]).get(last["notification_id"], Facts())
        entry = ctx.step.channels[phase - 1]
        is_last = phase == len(ctx.step.channels)
        move, at = escalation_move(
            facts, ctx.step.until, datetime.fromisoformat(last["at"]), entry.wait, is_last, ctx.now, poll_seconds()
        )
        if move == REACHED_UNTIL:
            row = _settle(row, phase, DONE, ctx.step.until, ctx.now)
        elif move == EXHAUSTED:
            row = _settle(row, phase, DONE, "sent" if entry.wait is None else "exhausted", ctx.now)
        elif move == NEXT:
            row = _escalate(ctx, row, phase, sent)
        else:
            return Wait(at)
    return Next()


# -- throttle ----------------------------------------------------------------------------------


def throttle_start(ctx: Context) -> Start:
    run = ctx.run
    if acts.take_throttle_slot(run.workflow_id, run.recipient_id, run.id, ctx.step.limit, ctx.step.window, ctx.now):
        return Start(DONE, "passed")
    return Start(STOPPED, "throttled")


def throttle_follow(ctx: Context, row: WorkflowStepRun):
    return Stop("throttled") if row.state == STOPPED else Next()


START = {
    "channel": channel_start,
    "delay": delay_start,
    "condition": condition_start,
    "escalation": escalation_start,
    "throttle": throttle_start,
    "digest": digest.digest_start,
}
FOLLOW = {
    "channel": channel_follow,
    "delay": delay_follow,
    "condition": condition_follow,
    "escalation": escalation_follow,
    "throttle": throttle_follow,
    "digest": digest.digest_follow,
}
