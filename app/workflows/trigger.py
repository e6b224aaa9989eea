"""Starting and cancelling runs. A trigger is accepted like any send: the run and the caller's idempotency key
are committed in one transaction (app/accept.py's reservation, naming the run), then the run's job is queued;
with Redis down the run still starts, re-driven by the scheduler (its ``next_at`` is now)."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from app.accept import Accepted, UnknownRecipient, create_once, request_fingerprint
from app.extensions import db
from app.models import Recipient, Workflow, WorkflowRun, WorkflowVersion
from app.models.types import utcnow
from app.models.workflows import CANCELLED, RUNNING
from app.redis_outage import enqueue_or_leave_to_reaper
from app.tasks import enqueue
from app.workflows import digest
from app.workflows.engine import ADVANCE_JOB


class UnknownWorkflow(LookupError):
    pass


def _run_row(workflow_id: int, version_id: int, recipient_id: int, payload, api_key_id, key, now) -> dict:
    return {
        "workflow_id": workflow_id,
        "version_id": version_id,
        "recipient_id": recipient_id,
        "data": payload.data,
        "api_key_id": api_key_id,
        "idempotency_key": key,
        "cancellation_key": payload.cancellation_key,
        "status": RUNNING,
        "current_step": 0,
        "next_at": now,
        "created_at": now,
        "updated_at": now,
    }


def trigger_workflow(payload, api_key_id: int | None, idempotency_key: str | None) -> Accepted:
    found = db.session.execute(
        select(Workflow.id, WorkflowVersion.id)
        .join(WorkflowVersion, WorkflowVersion.workflow_id == Workflow.id)
        .where(Workflow.key == payload.workflow, WorkflowVersion.version == Workflow.current_version)
    ).first()
    if found is None:
        raise UnknownWorkflow(payload.workflow)
    recipient_id = db.session.scalar(select(Recipient.id).where(Recipient.external_id == payload.user_id))
    if recipient_id is None:
        raise UnknownRecipient(payload.user_id)
    fingerprint = request_fingerprint(payload)
    now = utcnow()

    def create() -> dict:
        row = _run_row(*found, recipient_id, payload, api_key_id, idempotency_key, now)
        run_id = db.session.execute(insert(WorkflowRun).values(**row).returning(WorkflowRun.id)).scalar_one()
        return {"workflow_run_id": run_id}

    accepted = create_once(create, api_key_id, idempotency_key, fingerprint, now)
    if not accepted.replayed:
        enqueue_or_leave_to_reaper(enqueue, ADVANCE_JOB, accepted.workflow_run_id)
    return accepted


def cancel_runs(*conditions) -> int:
    """Cancel the runs matching ``conditions``: running ones -- unless one fired a digest of several triggers, which
    it now carries for all of them -- and ones stopped as they joined a digest not fired yet (their triggers drop out
    of it). A worker holding one stops at its next write, the pipeline suppresses what their steps had queued but
    not yet sent (app/pipeline/origin.py), and a digest they owned passes to another member in the same transaction
    (app/workflows/digest.py)."""
    now = utcnow()
    values = {"status": CANCELLED, "reason": "cancelled", "next_at": None, "finished_at": now, "updated_at": now}
    count, woken = 0, []
    # A second pass catches a joiner that a concurrent cancel of its digest's owner revived (stopped -> running)
    # while this one waited for the digest's lock: the first pass found it neither running nor still joined.
    for _pass in range(2):
        running = db.session.scalars(
            update(WorkflowRun)
            .where(WorkflowRun.status == RUNNING, WorkflowRun.carries_digest_id.is_(None), *conditions)
            .values(**values)
            .returning(WorkflowRun.id)
        ).all()
        stays_cancelled, revived = digest.hand_over(running, conditions, now)
        count += stays_cancelled + digest.drop_joined(conditions, values)
        woken += revived
    db.session.commit()
    for run_id, at in woken:
        enqueue_or_leave_to_reaper(enqueue, ADVANCE_JOB, run_id, at=at)
    return count


def cancel_run(run_id: int) -> int:
    return cancel_runs(WorkflowRun.id == run_id)


def cancel_by_key(key: str) -> int:
    return cancel_runs(WorkflowRun.cancellation_key == key)
