"""What a step does to the world: a notification on the API send's path, and a throttle slot."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from app.accept import notification_row
from app.extensions import db
from app.models import Notification, Template, WorkflowThrottleSlot
from app.models.bulk import insert_ignoring_conflicts
from app.pipeline import origin
from app.pipeline.route import route_notification
from app.schemas import NotificationCreate


def notification_for(run, index: int, channel: str, template_key: str, now: datetime) -> dict | None:
    """The row an API send of ``template_key`` on ``channel`` would store, stamped with the step as its origin;
    None when the template has gone since the definition was saved."""
    template = db.session.execute(
        select(Template.current_version, Template.type, Template.category).where(Template.key == template_key)
    ).first()
    if template is None:
        return None
    payload = NotificationCreate.model_construct(
        user_id="",
        type=template.type,
        category=template.category,
        template=template_key,
        title=None,
        body=None,
        data=dict(run.data or {}),
        channels=[channel],
        priority="normal",
        collapse_key=None,
        send_at=None,
    )
    row = notification_row(payload, run.recipient_id, template.current_version, run.api_key_id, None, now)
    row["origin"] = origin.of_workflow_step(run.id, index)
    row["workflow_id"], row["workflow_step"] = run.workflow_id, index
    return row


def store_notification(row: dict) -> None:
    db.session.execute(insert(Notification.__table__), row)


def route_if_unrouted(notification_id: str) -> None:
    """Route a step's notification unless done already: what an API send's job does (idempotent by its unique
    (notification, channel) deliveries), so the worker that resumes a step after a crash may call it again."""
    status = db.session.scalar(select(Notification.status).where(Notification.id == notification_id))
    db.session.commit()
    if status == "accepted":
        route_notification(notification_id)


def take_throttle_slot(workflow_id: int, recipient_id: int, run_id: int, limit: int, window: int, now) -> bool:
    """One of the ``limit`` slots whose last use is older than ``window`` (or a new one), taken conditionally."""
    for slot in range(limit):
        taken = db.session.execute(
            update(WorkflowThrottleSlot)
            .where(
                WorkflowThrottleSlot.workflow_id == workflow_id,
                WorkflowThrottleSlot.recipient_id == recipient_id,
                WorkflowThrottleSlot.slot == slot,
                WorkflowThrottleSlot.taken_at <= now - timedelta(seconds=window),
            )
            .values(run_id=run_id, taken_at=now)
        ).rowcount
        if taken:
            return True
        row = {
            "workflow_id": workflow_id,
            "recipient_id": recipient_id,
            "slot": slot,
            "run_id": run_id,
            "taken_at": now,
        }
        if insert_ignoring_conflicts(WorkflowThrottleSlot, [row], ["workflow_id", "recipient_id", "slot"]):
            return True
    return False
