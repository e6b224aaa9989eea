"""Advancing a run: take its lease, then claim, act, record each step, and move on -- or wait, or stop.

A worker takes a run by moving its ``next_at`` forward by the lease (one conditional UPDATE: one winner); every
later write names the lease token, so a worker whose lease ran out (it was slow, or SIGKILLed) changes nothing.
Each step is claimed by inserting its (run, step) row in the same transaction as its act (the notification it
sends, the throttle slot it takes), so a step is taken once whoever advances the run; what follows the act
(routing the notification, moving the run on) is safe to repeat, and a run left mid-step by a killed worker is
taken again by the scheduler once its lease is over (``redrive_due``) and resumed from its rows.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from flask import current_app
from sqlalchemy import select, update

from app.extensions import db
from app.models import WorkflowRun, WorkflowVersion
from app.models.types import utcnow
from app.models.workflows import COMPLETED, RUNNING, STOPPED
from app.redis_outage import enqueue_or_leave_to_reaper
from app.tasks import enqueue, enqueue_all, get_queue
from app.workflows import steps
from app.workflows.definitions import STEPS

ADVANCE_JOB = "jobs.workflows.advance_run"
REDRIVE_BATCH = 1000
REDRIVE_QUEUE = "normal"
# A run's steps are at most MAX_STEPS long, skips only move forward: one pass never needs more.
MAX_STEPS_PER_PASS = 200


@dataclass(frozen=True)
class Lease:
    run_id: int
    token: str


def lease_seconds() -> int:
    return current_app.config["WORKFLOW_LEASE_SECONDS"]


@lru_cache(maxsize=256)
def _definition(steps_json: str) -> list:
    return STEPS.validate_python(json.loads(steps_json))


def steps_of(raw_steps: list) -> list:
    """A version's steps as models (versions never change; the cache is keyed by their content)."""
    return _definition(json.dumps(raw_steps, sort_keys=True))


def definition_of(version_id: int) -> list:
    return steps_of(db.session.scalar(select(WorkflowVersion.steps).where(WorkflowVersion.id == version_id)))


def _load(run_id: int) -> tuple[WorkflowRun | None, list]:
    """The run with its version's steps, in one read."""
    found = db.session.execute(
        select(WorkflowRun, WorkflowVersion.steps)
        .join(WorkflowVersion, WorkflowVersion.id == WorkflowRun.version_id)
        .where(WorkflowRun.id == run_id)
    ).first()
    return (found[0], found[1]) if found else (None, [])


def take(run_id: int, now: datetime) -> Lease | None:
    """The run's lease, if it is running and due (nobody else holds it, or their lease ran out)."""
    token = uuid.uuid4().hex
    taken = db.session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == run_id, WorkflowRun.status == RUNNING, WorkflowRun.next_at <= now)
        .values(lease_token=token, next_at=now + timedelta(seconds=lease_seconds()), updated_at=now)
    ).rowcount
    db.session.commit()
    return Lease(run_id, token) if taken else None


def _held(lease: Lease):
    return (
        WorkflowRun.id == lease.run_id,
        WorkflowRun.lease_token == lease.token,
        WorkflowRun.status == RUNNING,
    )


def advance(run_id: int, now: datetime | None = None) -> str:
    """Advance the run as far as it can go now. Returns what became of it (for logs and tests)."""
    lease = take(run_id, now or utcnow())
    if lease is None:
        return "busy"
    for _ in range(MAX_STEPS_PER_PASS):
        db.session.expire_all()
        run, raw_steps = _load(run_id)
        if run is None or run.status != RUNNING or run.lease_token != lease.token:
            db.session.commit()
            return "lost"
        # The step reads the run as it was taken: detached, so the step's commits do not reload it on every read.
        db.session.expunge(run)
        definition = steps_of(raw_steps)
        index = run.current_step
        if index >= len(definition):
            return _finish(lease, COMPLETED, None)
        result = steps.take(steps.Context(run, index, definition[index], lease.token, utcnow(), definition))
        if result is None:
            return "lost"
        if isinstance(result, steps.Wait):
            return _wait(lease, result.at)
        if isinstance(result, steps.Stop):
            return _finish(lease, STOPPED, result.reason)
        if not _move(lease, index, index + 1 + result.skip):
            return "lost"
    return "continued"


def _move(lease: Lease, index: int, to: int) -> bool:
    now = utcnow()
    moved = db.session.execute(
        update(WorkflowRun)
        .where(*_held(lease), WorkflowRun.current_step == index)
        .values(current_step=to, next_at=now + timedelta(seconds=lease_seconds()), updated_at=now)
    ).rowcount
    db.session.commit()
    return bool(moved)


def _wait(lease: Lease, at: datetime) -> str:
    """Record when to look again (the database is the truth), then queue the fast path for that time."""
    done = db.session.execute(update(WorkflowRun).where(*_held(lease)).values(next_at=at, updated_at=utcnow())).rowcount
    db.session.commit()
    if not done:
        return "lost"
    enqueue_or_leave_to_reaper(enqueue, ADVANCE_JOB, lease.run_id, at=at)
    return "waiting"


def _finish(lease: Lease, status: str, reason: str | None) -> str:
    now = utcnow()
    done = db.session.execute(
        update(WorkflowRun)
        .where(*_held(lease))
        .values(status=status, reason=reason, next_at=None, finished_at=now, updated_at=now)
    ).rowcount
    db.session.commit()
    return status if done else "lost"


def redrive_due(now: datetime) -> int:
    """The scheduler's pass: queue every running run whose time has come (a wait that ended, a lease that ran out,
    a trigger whose job was lost). A duplicate of a job already queued is harmless: one of them takes the lease.

    While the queue already holds a batch's worth of jobs the workers are behind, and what is due is most likely
    queued: the pass then queues nothing (the runs stay due in the database; a later pass finds them). Without
    this, a backlog of triggers was queued again, 1,000 runs every pass, and the duplicates took half the workers'
    time (tests/bench/test_bench_workflows.py)."""
    if get_queue(REDRIVE_QUEUE).count >= REDRIVE_BATCH:
        return 0
    ids = db.session.scalars(
        select(WorkflowRun.id)
        .where(WorkflowRun.status == RUNNING, WorkflowRun.next_at <= now)
        .order_by(WorkflowRun.next_at)
        .limit(REDRIVE_BATCH)
    ).all()
    db.session.commit()
    if ids:
        enqueue_all(ADVANCE_JOB, [((run_id,), now) for run_id in ids], REDRIVE_QUEUE)
    return len(ids)
