"""Effective priority and the queue a notification travels on."""

from app.delivery.constants import PRIORITIES


def effective_priority(notification_type: str, requested: str | None) -> str:
    """Security notices are at least ``high``; everything else keeps what the caller asked."""
    priority = requested or "normal"
    if notification_type == "security" and PRIORITIES.index(priority) < PRIORITIES.index("high"):
        return "high"
    return priority
