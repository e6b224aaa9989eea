"""Workflow numbers for analytics, the console and ``/metrics``: each one GROUP BY over indexed columns.

A step's notifications carry their workflow and step index (``notifications.workflow_id`` / ``workflow_step``,
stamped when the step stores them), so sends break down by workflow and step without reading a run's rows or
parsing origins. Labels stay bounded: workflow keys and step indexes (at most 50 per workflow), never run ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select

from app.delivery.constants import DELIVERED, DISPATCHED, FAILED, SUPPRESSED
from app.extensions import db
from app.models import Delivery, Notification, Workflow, WorkflowRun, WorkflowStepRun


@dataclass(frozen=True)
class StepSends:
    """What one workflow step (or, with ``step`` None, the whole workflow) sent in a period. ``notifications``,
    ``read`` and ``clicked`` count notifications; ``sent`` (handed to a provider or the inbox), ``delivered``
    (confirmed), ``failed`` and ``suppressed`` count deliveries, as the channel breakdown does."""

    workflow: str
    step: int | None
    notifications: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    clicked: int = 0
    failed: int = 0
    suppressed: int = 0

    def plus(self, other: StepSends) -> StepSends:
        return StepSends(
            self.workflow,
            self.step,
            *(getattr(self, name) + getattr(other, name) for name in COUNTS),
        )


COUNTS = ("notifications", "sent", "delivered", "read", "clicked", "failed", "suppressed")


@dataclass(frozen=True)
class WorkflowSends:
    total: StepSends
    steps: list[StepSends]


def sends_by_workflow_step(start: datetime, end: datetime) -> list[WorkflowSends]:
    """Workflow notifications created in [start, end) and what became of them, per workflow and step: two
    aggregates (notifications, deliveries), merged by (workflow, step)."""

    def window(statement):
        return statement.join(Workflow, Workflow.id == Notification.workflow_id).where(
            Notification.created_at >= start, Notification.created_at < end, Notification.workflow_id.is_not(None)
        )

    group = (Workflow.key, Notification.workflow_step)
    notes = db.session.execute(
        window(
            select(*group, func.count(), func.count(Notification.read_at), func.count(Notification.clicked_at))
        ).group_by(*group)
    ).all()
    deliveries = db.session.execute(
        window(
            select(
                *group,
                func.count(case((Delivery.status.in_((DISPATCHED, DELIVERED)), 1))),
                func.count(case((Delivery.status == DELIVERED, 1))),
                func.count(case((Delivery.status == FAILED, 1))),
                func.count(case((Delivery.status == SUPPRESSED, 1))),
            )
            .select_from(Delivery)
            .join(Notification, Notification.id == Delivery.notification_id)
        ).group_by(*group)
    ).all()
    rows: dict[tuple[str, int], StepSends] = {}
    for key, step, count, read, clicked in notes:
        rows[(key, step)] = StepSends(key, step, notifications=count, read=read, clicked=clicked)
    for key, step, sent, delivered, failed, suppressed in deliveries:
        found = rows.get((key, step), StepSends(key, step))
        rows[(key, step)] = found.plus(
            StepSends(key, step, sent=sent, delivered=delivered, failed=failed, suppressed=suppressed)
        )
    by_workflow: dict[str, list[StepSends]] = {}
    for (key, _step), row in sorted(rows.items()):
        by_workflow.setdefault(key, []).append(row)
    result = []
    for key, steps in by_workflow.items():
        total = StepSends(key, None)
        for row in steps:
            total = total.plus(row)
        result.append(WorkflowSends(total, steps))
    return result


def sent_per_step(workflow_id: int) -> dict[int, int]:
    """Notifications each step of the workflow made, all time."""
    return dict(
        db.session.execute(
            select(Notification.workflow_step, func.count())
            .where(Notification.workflow_id == workflow_id)
            .group_by(Notification.workflow_step)
        ).all()
    )


# -- /metrics ---------------------------------------------------------------------------------------


def runs_by_status() -> list[tuple[str, str, int]]:
    """(workflow key, run status, runs)."""
    return [
        tuple(row)
        for row in db.session.execute(
            select(Workflow.key, WorkflowRun.status, func.count())
            .join(Workflow, Workflow.id == WorkflowRun.workflow_id)
            .group_by(Workflow.key, WorkflowRun.status)
        )
    ]


def step_executions() -> list[tuple[str, int, str, str, int]]:
    """(workflow key, step index, state, outcome or "none", executions)."""
    rows = db.session.execute(
        select(Workflow.key, WorkflowStepRun.step_index, WorkflowStepRun.state, WorkflowStepRun.outcome, func.count())
        .join(WorkflowRun, WorkflowRun.id == WorkflowStepRun.run_id)
        .join(Workflow, Workflow.id == WorkflowRun.workflow_id)
        .group_by(Workflow.key, WorkflowStepRun.step_index, WorkflowStepRun.state, WorkflowStepRun.outcome)
    )
    return [(key, index, state, outcome or "none", count) for key, index, state, outcome, count in rows]


def step_deliveries() -> list[tuple[str, int, str, int]]:
    """(workflow key, step index, delivery status, deliveries) of every workflow step's notifications."""
    return [
        tuple(row)
        for row in db.session.execute(
            select(Workflow.key, Notification.workflow_step, Delivery.status, func.count())
            .select_from(Delivery)
            .join(Notification, Notification.id == Delivery.notification_id)
            .join(Workflow, Workflow.id == Notification.workflow_id)
            .group_by(Workflow.key, Notification.workflow_step, Delivery.status)
        )
    ]
