"""Test sends: a campaign's current content sent to a few named recipients through the normal pipeline,
and what became of each of their deliveries, read back for the console's test-send panel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from app.campaigns.store import audit
from app.delivery.constants import DELIVERED, DISPATCHED, FAILED, FINAL_STATUSES, SUPPRESSED
from app.extensions import db
from app.models import Campaign, Delivery, Notification, Recipient, StaffUser, Template
from app.models.types import utcnow


@dataclass(frozen=True)
class TestSendResult:
    user_id: str
    notification_id: str | None
    error: str | None


@dataclass(frozen=True)
class ChannelOutcome:
    """What became of one test delivery, read from its row."""

    channel: str
    status: str
    detail: str | None = None  # the reason, error or deferral
    settled: bool = True  # nothing more will change without waiting (final, or deferred to a later time)

    @property
    def label(self) -> str:
        return {DELIVERED: "sent", DISPATCHED: "sent", FAILED: "failed", SUPPRESSED: "suppressed"}.get(
            self.status, "deferred" if self.settled else "sending"
        )


def channel_outcome(delivery: Delivery, now: datetime) -> ChannelOutcome:
    if delivery.status == FAILED:
        code = delivery.error_code or "error"
        return ChannelOutcome(
            delivery.channel, FAILED, f"{code}: {delivery.last_error}" if delivery.last_error else code
        )
    if delivery.status in FINAL_STATUSES:
        return ChannelOutcome(delivery.channel, delivery.status, delivery.reason)
    if delivery.not_before is not None and delivery.not_before > now + timedelta(seconds=30):
        return ChannelOutcome(
            delivery.channel,
            delivery.status,
            f"until {delivery.not_before:%Y-%m-%d %H:%M} UTC ({delivery.reason or 'quiet hours'})",
        )
    return ChannelOutcome(delivery.channel, delivery.status, None, settled=False)


@dataclass(frozen=True)
class TestOutcome:
    user_id: str
    notification_id: str
    channels: tuple[ChannelOutcome, ...]

    @property
    def settled(self) -> bool:
        return bool(self.channels) and all(c.settled for c in self.channels)


def test_outcomes(campaign: Campaign, notification_ids: list[str], now: datetime | None = None) -> list[TestOutcome]:
    """Each of this campaign's test notifications with its deliveries as they stand (none yet: still queued)."""
    now = now or utcnow()
    rows = db.session.execute(
        select(Notification.id, Recipient.external_id, Notification.data)
        .join(Recipient, Recipient.id == Notification.recipient_id)
        .where(Notification.id.in_(notification_ids))
    ).all()
    notes = [(n, user) for n, user, data in rows if (data or {}).get("campaign_id") == campaign.id]
    deliveries: dict[str, list[ChannelOutcome]] = {}
    for delivery in db.session.scalars(
        select(Delivery).where(Delivery.notification_id.in_([n for n, _u in notes])).order_by(Delivery.id)
    ):
        deliveries.setdefault(delivery.notification_id, []).append(channel_outcome(delivery, now))
    found = {n: TestOutcome(user, n, tuple(deliveries.get(n, ()))) for n, user in notes}
    return [found[n] for n in notification_ids if n in found]


def test_send(campaign: Campaign, user_ids: list[str], actor: StaffUser) -> list[TestSendResult]:
    """Send the campaign's current content to a few recipients through the normal pipeline, marked as a test."""
    from app.accept import UnknownRecipient, UnknownTemplate, accept_notification
    from app.schemas import NotificationCreate

    template = db.session.get(Template, campaign.template_id)
    results = []
    for user_id in user_ids:
        payload = NotificationCreate(
            user_id=user_id,
            type=template.type,
            category=template.category,
            template=template.key,
            data={"campaign_id": campaign.id, "campaign_test": True},
            channels=list(campaign.channels),
            priority="high",
        )
        try:
            accepted = accept_notification(payload, api_key_id=None, idempotency_key=None)
        except UnknownRecipient:
            results.append(TestSendResult(user_id, None, "no recipient has this user id"))
        except UnknownTemplate:
            results.append(TestSendResult(user_id, None, "the template no longer exists"))
        else:
            results.append(TestSendResult(user_id, accepted.id, None))
    audit(
        actor,
        "campaign.test_send",
        campaign,
        None,
        {"user_ids": user_ids, "sent": [r.notification_id for r in results if r.notification_id]},
    )
    db.session.commit()
    return results
