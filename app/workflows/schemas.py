"""Request and response bodies of /v1/workflows and /v1/workflow-runs, and of a workflow trigger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.schemas import IDEMPOTENCY_KEY_DESCRIPTION, Strict
from app.workflows.definitions import KEY_PATTERN

WORKFLOW_KEY_PATTERN = KEY_PATTERN


class WorkflowTrigger(Strict):
    """``POST /v1/notifications`` with ``workflow``: start one run of the workflow's current version for the user.
    The idempotency key works as for any send (a replay answers the same run; another body is 409)."""

    workflow: str = Field(pattern=WORKFLOW_KEY_PATTERN, description="The workflow's key; an unknown key is 404")
    user_id: str = Field(min_length=1, max_length=255)
    data: dict[str, Any] = Field(default_factory=dict, description="Available to every step's template and condition")
    idempotency_key: str | None = Field(None, min_length=1, max_length=255, description=IDEMPOTENCY_KEY_DESCRIPTION)
    cancellation_key: str | None = Field(
        None, min_length=1, max_length=255, description="Cancel every running run holding it with one call"
    )


class WorkflowRunAccepted(BaseModel):
    workflow_run_id: int
    status: str


class WorkflowOut(BaseModel):
    key: str
    name: str
    version: int = Field(description="The current version: every save makes a new one; runs keep theirs")
    steps: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class WorkflowList(BaseModel):
    items: list[WorkflowOut]


class SentOut(BaseModel):
    channel: str
    notification_id: str
    at: datetime
    status: str | None = Field(None, description="The delivery's status on that channel")


class StepOut(BaseModel):
    index: int
    kind: str
    state: str = Field(description="pending (not reached), waiting, done, skipped or stopped")
    outcome: str | None = None
    detail: str | None = None
    wait_until: datetime | None = None
    sent: list[SentOut] = Field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class WorkflowRunOut(BaseModel):
    id: int
    workflow: str
    version: int
    user_id: str
    status: str = Field(description="running, completed, stopped (by a condition or throttle) or cancelled")
    reason: str | None = None
    current_step: int
    next_at: datetime | None = None
    data: dict[str, Any]
    cancellation_key: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    steps: list[StepOut]


class CancelResult(BaseModel):
    cancelled: int = Field(
        description="How many runs were cancelled: running ones, and ones whose trigger waits in a digest not fired"
        " yet (0 when none was)"
    )
