"""Workflows: named, versioned lists of steps run per recipient (see app/workflows/)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import BigId, Json, UTCDateTime, utcnow

# Run statuses: RUNNING until the last step is taken (COMPLETED), a condition or throttle ends it (STOPPED),
# or the caller cancels it (CANCELLED).
RUNNING = "running"
COMPLETED = "completed"
STOPPED = "stopped"
CANCELLED = "cancelled"
RUN_STATUSES = (RUNNING, COMPLETED, STOPPED, CANCELLED)


class Workflow(db.Model):
    __tablename__ = "workflows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkflowVersion(db.Model):
    """One saved definition; never changed afterwards, so a run follows the steps it started with."""

    __tablename__ = "workflow_versions"
    __table_args__ = (UniqueConstraint("workflow_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    steps: Mapped[list] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkflowRun(db.Model):
    """One trigger of a workflow for one recipient. ``next_at`` is when a worker should look at it again: the
    scheduler re-drives every running run whose time has come, so waits survive a restart of every process."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        Index("ix_workflow_runs_due", "status", "next_at"),
        Index("ix_workflow_runs_cancellation", "cancellation_key"),
        Index("ix_workflow_runs_workflow", "workflow_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("workflow_versions.id", ondelete="CASCADE"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), index=True)
    data: Mapped[dict] = mapped_column(Json, default=dict)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    cancellation_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=RUNNING)
    reason: Mapped[str | None] = mapped_column(String(255))
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The worker advancing the run holds it until next_at (its lease); every write it makes names this token.
    lease_token: Mapped[str | None] = mapped_column(String(32))
    # Set when the run fired a digest of several triggers: it then speaks for all of them, so cancelling it (its
    # own trigger) no longer stops it. A column of the run, so a cancel racing the firing sees it under the row lock.
    carries_digest_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkflowStepRun(db.Model):
    """A step's execution: inserting this row (unique per run and step) is the claim; the act is committed with it."""

    __tablename__ = "workflow_step_runs"
    __table_args__ = (UniqueConstraint("run_id", "step_index"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    step_index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    # waiting (taken, not finished) -> done | skipped | stopped
    state: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(32))
    # Each act of a multi-act step (an escalation's next channel) moves phase by one, conditionally.
    phase: Mapped[int] = mapped_column(Integer, default=0)
    # What it sent: [{"channel", "notification_id", "at"}]
    sent: Mapped[list] = mapped_column(Json, default=list)
    wait_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detail: Mapped[str | None] = mapped_column(Text)
    # A digest step: the digest this run's trigger landed in (each trigger in exactly one).
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("workflow_digests.id", ondelete="SET NULL"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkflowDigest(db.Model):
    """Triggers collected by a digest step: at most one open digest per (workflow, recipient, step, key). Its owner
    (the run that opened it) continues with every member once it closes; the runs that joined it stop there. A
    cancelled owner hands the role to the oldest member still standing (app/workflows/digest.py)."""

    __tablename__ = "workflow_digests"
    __table_args__ = (
        Index(
            "ux_workflow_digests_open",
            "workflow_id",
            "recipient_id",
            "step_index",
            "digest_key",
            unique=True,
            sqlite_where=text("state = 'open'"),
            postgresql_where=text("state = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    step_index: Mapped[int] = mapped_column(Integer)
    digest_key: Mapped[str] = mapped_column(String(255))
    # open -> closed -> fired (members read, owner moving on) | dropped (every member cancelled)
    state: Mapped[str] = mapped_column(String(16))
    owner_run_id: Mapped[int] = mapped_column(BigId)
    count: Mapped[int] = mapped_column(Integer)
    max_events: Mapped[int | None] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkflowThrottleSlot(db.Model):
    """A throttle of N runs per window is N slots per (workflow, recipient); a run passes by taking a slot whose
    last use is older than the window -- one conditional write, so two runs at once cannot both take the last one."""

    __tablename__ = "workflow_throttle_slots"

    workflow_id: Mapped[int] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(BigId)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
