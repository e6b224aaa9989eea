"""Claims: the conditional UPDATE that exactly one sender wins, committed before any provider call."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, or_, update

from app.delivery.constants import PENDING, SENDING
from app.extensions import db
from app.models import Delivery, DeliveryEvent
from app.models.bulk import insert_rows


def lease_seconds() -> int:
    return current_app.config["DISPATCH_LEASE_SECONDS"]


def due(now: datetime, lease: int | None = None):
    """Deliveries that may be claimed now: PENDING and due, or SENDING whose claim's lease ran out (a crashed sender)."""
    lease = lease_seconds() if lease is None else lease
    return or_(
        and_(Delivery.status == PENDING, or_(Delivery.not_before.is_(None), Delivery.not_before <= now)),
        and_(Delivery.status == SENDING, Delivery.claimed_at < now - timedelta(seconds=lease)),
    )


def is_due(status: str, not_before: datetime | None, claimed_at: datetime | None, now: datetime, lease: int) -> bool:
    """:func:`due` for one row already loaded."""
    if status == PENDING:
        return not_before is None or not_before <= now
    return status == SENDING and claimed_at is not None and claimed_at < now - timedelta(seconds=lease)


def claim(delivery_ids: list[int], now: datetime, lease: int | None = None) -> dict[int, int]:
    """PENDING (and due) -> SENDING, or take over an expired claim; returns {id: attempts} of the rows this call won.

    The caller commits (with whatever else belongs in the same transaction) before calling a provider.
    """
    if not delivery_ids:
        return {}
    won = db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), due(now, lease))
        .values(status=SENDING, claimed_at=now, attempts=Delivery.attempts + 1, updated_at=now)
        .returning(Delivery.id, Delivery.attempts),
        execution_options={"synchronize_session": False},
    ).all()
    # one multi-row INSERT (unnest on PostgreSQL), not the ORM's executemany: a batch adapter claims 1,000 at once
    insert_rows(
        DeliveryEvent, [{"delivery_id": d, "status": SENDING, "detail": None, "created_at": now} for d, _a in won]
    )
    return dict(won)


def renew(delivery_ids: list[int], claimed_at: datetime, now: datetime) -> list[int]:
    """Move a live sender's claims (the same claim: ``claimed_at``) to ``now``, so they do not look abandoned.

    Only for claims not yet handed to a provider; the attempt they counted stays counted once.
    """
    if not delivery_ids:
        return []
    return list(
        db.session.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.status == SENDING, Delivery.claimed_at == claimed_at)
            .values(claimed_at=now, updated_at=now)
            .returning(Delivery.id),
            execution_options={"synchronize_session": False},
        ).scalars()
    )
