"""Recording what happened: one bulk write per group of results, retries scheduled, campaign counters kept.

:func:`transition` is the whole policy for one result (pure: the tests call
it directly); :func:`record` writes a group of them at once -- the delivery
rows, their events, dead devices switched off, hard-bounced addresses
suppressed -- in one transaction, and tells the :class:`Report` what to hand
back to the queue.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update

from app.channels import Outcome, Result
from app.delivery.constants import DELIVERED, DISPATCHED, FAILED, PENDING
from app.delivery.retry import next_retry_delay
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Device, Suppression
from app.models.bulk import insert_ignoring_conflicts, insert_rows, update_by_id
from app.models.types import utcnow
from app.outbound_webhooks import events as webhook_events
from app.outbound_webhooks.outbox import emit
from app.pipeline import origin
from app.pipeline.content import address_of


@dataclass
class Report:
    """What one pipeline run did: counts for logs and tests, the status each delivery ended in, what to send later."""

    counts: Counter = field(default_factory=Counter)
    statuses: dict[int, str] = field(default_factory=dict)
    # (priority, when) -> delivery ids to hand to the pipeline again at that time
    later: dict[tuple[str, datetime], list[int]] = field(default_factory=lambda: defaultdict(list))
    # campaign id -> progress counters this run changed
    campaigns: dict[int, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def count(self, item, name: str, amount: int = 1) -> None:
        self.counts[name] += amount
        kind, ident = origin.parse(item.notification.origin)
        if kind == origin.CAMPAIGN:
            self.campaigns[ident][name] += amount

    def send_later(self, item, at: datetime) -> None:
        """Hand ``item`` back to the queue at ``at`` (rounded up to the second: one job per second, not per delivery)."""
        if at.microsecond:
            at = at.replace(microsecond=0) + timedelta(seconds=1)
        self.later[(item.notification.priority, at)].append(item.id)


@dataclass(frozen=True)
class Transition:
    status: str
    attempts: int
    detail: str
    not_before: datetime | None = None
    error_code: str | None = None
    last_error: str | None = None
    dead: bool = False


def transition(result: Result, attempts: int, now: datetime) -> Transition:
    """Where a delivery goes after one send: sent, wait (attempt given back), retry with backoff, or FAILED."""
    if result.outcome in (Outcome.DISPATCHED, Outcome.DELIVERED):
        status = DELIVERED if result.outcome is Outcome.DELIVERED else DISPATCHED
        return Transition(status, attempts, result.detail or result.provider_message_id or status)
    if result.outcome is Outcome.WAIT:
        delay = result.retry_after or 1.0
        return Transition(
            PENDING,
            max(0, attempts - 1),
            f"waiting {delay:.1f}s: {result.detail or result.error_code}",
            not_before=now + timedelta(seconds=delay),
        )
    if result.outcome is Outcome.TRANSIENT:
        delay = next_retry_delay(attempts)
        if delay is None:
            return Transition(
                FAILED,
                attempts,
                f"gave up after {attempts} attempts: {result.detail}",
                error_code=result.error_code,
                last_error=result.detail,
                dead=True,
            )
        delay = max(delay, result.retry_after or 0)
        return Transition(
            PENDING,
            attempts,
            f"attempt {attempts} failed ({result.error_code}: {result.detail}); retry in {delay:.1f}s",
            not_before=now + timedelta(seconds=delay),
            error_code=result.error_code,
            last_error=result.detail,
        )
    return Transition(
        FAILED,
        attempts,
        f"{result.error_code}: {result.detail}",
        error_code=result.error_code,
        last_error=result.detail,
        dead=True,
    )


def _row(item, result: Result, change: Transition, now: datetime) -> dict:
    sent = change.status in (DISPATCHED, DELIVERED)
    return {
        "id": item.id,
        "status": change.status,
        "attempts": change.attempts,
        "provider": result.provider,
        "provider_message_id": result.provider_message_id if sent else None,
        "not_before": change.not_before,
        "dispatched_at": now if sent else None,
        "delivered_at": now if change.status == DELIVERED else None,
        "last_error": change.last_error,
        "error_code": change.error_code,
        "dead_lettered_at": now if change.dead else None,
        "updated_at": now,
    }


def record(pairs: list[tuple[object, Result]], report: Report, now: datetime | None = None) -> None:
    """Write a group of send results at once (each ``item`` claimed, with the attempts its claim counted)."""
    if not pairs:
        return
    now = now or utcnow()
    rows, events, dead_devices, bounced = [], [], [], []
    for item, result in pairs:
        change = transition(result, item.attempts, now)
        rows.append(_row(item, result, change, now))
        events.append({"delivery_id": item.id, "status": change.status, "detail": change.detail, "created_at": now})
        dead_devices.extend(result.dead_devices)
        if result.outcome is Outcome.TOKEN_GONE:
            bounced.append((item, result))
        report.statuses[item.id] = change.status
        if change.status in (DISPATCHED, DELIVERED):
            report.count(item, f"sent:{item.channel}")
        elif change.status == FAILED:
            report.count(item, "failed")
        else:
            report.send_later(item, change.not_before)
    update_by_id(Delivery, rows)
    insert_rows(DeliveryEvent, events)
    deactivate_devices(dead_devices)
    suppress_addresses(bounced, now)
    emit(webhook_events.delivery_outcomes([(item, report.statuses[item.id], result) for item, result in pairs]))
    db.session.commit()


def deactivate_devices(dead: list[tuple[int, str]]) -> None:
    """Dead push tokens and web-push subscriptions stop at once: never tried again, kept for the record."""
    for device_id, reason in dead:
        db.session.execute(
            update(Device)
            .where(Device.id == device_id, Device.active.is_(True))
            .values(active=False, deactivated_reason=reason[:255])
        )


def suppress_addresses(bounced: list[tuple[object, Result]], now: datetime) -> None:
    """A hard bounce (or dead number) goes on the suppression list so it is never tried again."""
    rows = {}
    for item, result in bounced:
        address = address_of(item.person, item.channel)
        if address:
            canonical = Suppression.canonical(item.channel, address)
            rows[(item.channel, canonical)] = {
                "channel": item.channel,
                "address": canonical,
                "reason": f"hard bounce ({result.error_code})",
                "created_at": now,
            }
    if rows:
        insert_ignoring_conflicts(Suppression, list(rows.values()), ["channel", "address"])
