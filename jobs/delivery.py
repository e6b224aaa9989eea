"""RQ entry points of the delivery pipeline (:mod:`app.pipeline`); the work itself lives there."""

from __future__ import annotations

from app.pipeline.deliver import deliver as _deliver
from app.pipeline.route import route_notification as _route_notification
from app.pipeline.route import route_notifications as _route_notifications


def route_notification(notification_id: str) -> None:
    _route_notification(notification_id)


def route_notifications(notification_ids: list[str]) -> None:
    _route_notifications(notification_ids)


def deliver(delivery_ids: list[int]) -> dict[str, int]:
    """A chunk of deliveries of any origin: the pipeline re-checks each origin's policy before sending."""
    return dict(_deliver(delivery_ids).counts)


def dispatch_delivery(delivery_id: int) -> str:
    """One delivery (a chunk of one); returns its status, or why nothing was sent, for logs and tests."""
    report = _deliver([delivery_id])
    if delivery_id in report.statuses:
        return report.statuses[delivery_id]
    for outcome in ("rescheduled", "not-claimed", "paused", "busy"):
        if report.counts[outcome]:
            return outcome
    return "not-claimed"
