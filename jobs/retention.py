"""History older than ``HERALD_RETENTION_DAYS`` is deleted: notifications (their deliveries and delivery events go
with them, by foreign-key cascade) and the daily rules' sent log.

Deletes run in chunks of ids, each its own short transaction, so a large
backlog never holds long locks; a run stops after its time budget and the next
hourly run carries on. A rule's sent-log row is the dedup gate for its period,
so it is kept at least two days past the end of the longest period that rule
uses ("every N days"), whatever the retention says.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime, timedelta

from sqlalchemy import delete, select

from app.extensions import db
from app.models import Notification, Rule, RuleSend

log = logging.getLogger(__name__)

CHUNK = 5000
BUDGET_SECONDS = 20.0
# A local date can be a day either side of the UTC date, plus a day of margin.
DATE_MARGIN_DAYS = 2


def sent_log_cutoff(today: datetime, retention_days: int, every_days: int) -> date:
    """Sent-log rows of a rule dated before this are history: never again the gate of a current period."""
    return (today - timedelta(days=max(retention_days, every_days + DATE_MARGIN_DAYS))).date()


def _delete_in_chunks(model, condition, order_by, deadline: float) -> tuple[int, bool]:
    """(rows deleted, finished) for ``model`` rows matching ``condition``, CHUNK ids per transaction.

    At least one chunk per call, however short the budget: every run makes progress.
    """
    deleted = 0
    while True:
        ids = db.session.scalars(select(model.id).where(condition).order_by(order_by).limit(CHUNK)).all()
        if not ids:
            db.session.rollback()
            return deleted, True
        db.session.execute(delete(model).where(model.id.in_(ids)))
        db.session.commit()
        deleted += len(ids)
        if time.monotonic() >= deadline:
            return deleted, False


def purge_expired_history(now: datetime, retention_days: int, budget_seconds: float = BUDGET_SECONDS) -> dict:
    """Delete what is older than the retention; ``retention_days`` 0 keeps everything. Returns what was done."""
    if retention_days <= 0:
        return {"notifications": 0, "rule_sends": 0, "finished": True}
    deadline = time.monotonic() + budget_seconds
    cutoff = now - timedelta(days=retention_days)
    notifications, finished = _delete_in_chunks(
        Notification, Notification.created_at < cutoff, Notification.created_at, deadline
    )
    rule_sends = 0
    for rule_id, every_days in db.session.execute(select(Rule.id, Rule.every_days)).all():
        if not finished:
            break
        condition = (RuleSend.rule_id == rule_id) & (
            RuleSend.local_date < sent_log_cutoff(now, retention_days, every_days)
        )
        count, finished = _delete_in_chunks(RuleSend, condition, RuleSend.id, deadline)
        rule_sends += count
    db.session.rollback()
    if notifications or rule_sends:
        log.info(
            "retention (%d days): deleted %d notifications and %d sent-log rows%s",
            retention_days,
            notifications,
            rule_sends,
            "" if finished else "; more next run",
        )
    return {"notifications": notifications, "rule_sends": rule_sends, "finished": finished}
