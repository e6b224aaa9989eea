"""Writes shared by the provider webhooks: settle a delivery from a receipt, suppress an address."""

from __future__ import annotations

from sqlalchemy import select, update

from app.channels import canonical_address
from app.delivery.constants import DELIVERED, FAILED
from app.delivery.receipts import receipt_transition
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Suppression
from app.models.bulk import insert_ignoring_conflicts
from app.models.types import utcnow
from app.outbound_webhooks import events as webhook_events
from app.outbound_webhooks.outbox import emit


def settle(
    channel: str,
    provider_message_id: str,
    reported: str,
    final: dict[str, str],
    error_code: str | None = None,
    detail: str | None = None,
) -> Delivery | None:
    """Move the delivery a receipt names to DELIVERED or FAILED, once; returns it when it moved."""
    delivery = db.session.scalar(
        select(Delivery).where(Delivery.channel == channel, Delivery.provider_message_id == provider_message_id)
    )
    if delivery is None:
        return None
    target = receipt_transition(delivery.status, reported, final)
    if target is None:
        return None
    now = utcnow()
    values = {"status": target, "updated_at": now}
    if target == DELIVERED:
        values["delivered_at"] = now
    if target == FAILED:
        values.update(error_code=error_code, last_error=detail, dead_lettered_at=now)
    # Conditional on the status read above: two racing callbacks settle it once.
    moved = db.session.execute(
        update(Delivery).where(Delivery.id == delivery.id, Delivery.status == delivery.status).values(**values)
    ).rowcount
    if not moved:
        db.session.rollback()
        return None
    db.session.add(
        DeliveryEvent(
            delivery_id=delivery.id,
            status=target,
            detail=f"receipt: {reported}" + (f" ({error_code}: {detail})" if error_code else ""),
            created_at=now,
        )
    )
    emit(
        webhook_events.delivery_outcome(
            target,
            delivery.notification_id,
            channel,
            recipient_id=delivery.notification.recipient_id,
            provider=delivery.provider,
            error_code=error_code,
        )
    )
    return delivery


def suppress(channel: str, address: str, reason: str) -> None:
    insert_ignoring_conflicts(
        Suppression,
        [
            {
                "channel": channel,
                "address": canonical_address(channel, address),
                "reason": reason,
                "created_at": utcnow(),
            }
        ],
        ["channel", "address"],
    )
