"""What happened to what a step sent, read from its notification and delivery rows, and the pure decisions on it.

A step's notification is *delivered* when one of its deliveries reached the provider or the inbox (DISPATCHED or
DELIVERED), *read* / *clicked* when the recipient read or followed it, and *failed* when every delivery ended
without being delivered (FAILED after its retries, SUPPRESSED by preferences, suppression or hard stop, UNCERTAIN)
or routing made none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from app.delivery.constants import DELIVERED, DISPATCHED, FAILED, SUPPRESSED, UNCERTAIN
from app.extensions import db
from app.models import Delivery, Notification

REACHED = (DISPATCHED, DELIVERED)
ENDED_UNDELIVERED = (FAILED, SUPPRESSED, UNCERTAIN)


@dataclass(frozen=True)
class Facts:
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    clicked_at: datetime | None = None
    failed_at: datetime | None = None

    def at(self, outcome: str) -> datetime | None:
        return {
            "delivered": self.delivered_at,
            "read": self.read_at,
            "clicked": self.clicked_at,
            "failed": self.failed_at,
        }[outcome]


def summarise(status: str, routed_at, read_at, clicked_at, deliveries: list[tuple]) -> Facts:
    """``deliveries``: (status, delivered_at, dispatched_at, updated_at) of one notification."""
    reached = [d[1] or d[2] or d[3] for d in deliveries if d[0] in REACHED]
    failed_at = None
    if not reached and status == "routed":
        if not deliveries:
            failed_at = routed_at
        elif all(d[0] in ENDED_UNDELIVERED for d in deliveries):
            failed_at = max(d[3] for d in deliveries)
    return Facts(min(reached) if reached else None, read_at, clicked_at, failed_at)


def facts_of(notification_ids: list[str]) -> dict[str, Facts]:
    if not notification_ids:
        return {}
    notes = db.session.execute(
        select(
            Notification.id, Notification.status, Notification.routed_at, Notification.read_at, Notification.clicked_at
        ).where(Notification.id.in_(notification_ids))
    ).all()
    rows: dict[str, list[tuple]] = {nid: [] for nid in notification_ids}
    for nid, *rest in db.session.execute(
        select(
            Delivery.notification_id,
            Delivery.status,
            Delivery.delivered_at,
            Delivery.dispatched_at,
            Delivery.updated_at,
        ).where(Delivery.notification_id.in_(notification_ids))
    ):
        rows[nid].append(tuple(rest))
    return {n.id: summarise(n.status, n.routed_at, n.read_at, n.clicked_at, rows[n.id]) for n in notes}


@dataclass(frozen=True)
class Decision:
    """``holds`` is True/False once known; None means look again at ``look_at``."""

    holds: bool | None
    look_at: datetime | None = None


def outcome_test(happened_at, sent_at: datetime, within: int | None, now: datetime, poll: int) -> Decision:
    """Did the outcome happen (within ``within`` seconds of the send)? Without ``within`` it is decided now."""
    if within is None:
        return Decision(happened_at is not None)
    deadline = sent_at + timedelta(seconds=within)
    if happened_at is not None and happened_at <= deadline:
        return Decision(True)
    if now >= deadline:
        return Decision(False)
    return Decision(None, min(deadline, now + timedelta(seconds=poll)))


def step_failed_at(sent: list[Facts], exhausted_at: datetime | None) -> datetime | None:
    """When a finished step failed as a whole, or None: nothing it sent was delivered, and either every
    notification it sent ended undelivered (a channel step's one; every channel an escalation tried) or the
    escalation ran out of channels and time without a delivery (``exhausted_at``, when it ended so)."""
    if not sent or any(facts.delivered_at is not None for facts in sent):
        return None
    failed = [facts.failed_at for facts in sent]
    if all(at is not None for at in failed):
        return max(failed)
    return exhausted_at


DONE, NEXT, EXHAUSTED, WAIT = "done", "next", "exhausted", "wait"


def escalation_move(
    facts: Facts, until: str, sent_at: datetime, wait: int | None, is_last: bool, now: datetime, poll: int
) -> tuple[str, datetime | None]:
    """After sending on one channel of an escalation: finished (``until`` reached), on to the next channel (it
    failed, or ``wait`` ran out), nothing left to try, or look again later."""
    if facts.at(until) is not None:
        return DONE, None
    out_of_time = wait is None or now >= sent_at + timedelta(seconds=wait)
    if facts.failed_at is not None or out_of_time:
        return (EXHAUSTED if is_last else NEXT), None
    return WAIT, min(sent_at + timedelta(seconds=wait), now + timedelta(seconds=poll))
