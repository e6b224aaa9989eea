"""Recipients, the service side: search, preference grid, suppressions, history, and the audited changes.

The console's recipient views (app/console/recipients.py) read a request, call
one of these and render. Each change commits together with its audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.api.workflows import run_json
from app.channels import address_fields, canonical_address, channel_names
from app.console.audit import Page, page_of, record_change
from app.delivery.constants import ALL_CATEGORIES
from app.delivery.routing import MARKETING_CATEGORY
from app.extensions import db
from app.models import Delivery, Notification, Preference, Recipient, Suppression, Template
from app.models.types import utcnow
from app.outbound_webhooks import events as webhook_events
from app.outbound_webhooks.outbox import emit
from app.workflows import store as workflow_store

HISTORY_PER_PAGE = 10
WORKFLOW_RUNS_SHOWN = 10
# Channels whose address lives on the recipient row, so a suppression entry can be matched to them.
ADDRESS_CHANNELS = address_fields()
CHANNELS = channel_names()


# -- reads ---------------------------------------------------------------------------------------


def search_recipients(query: str, number: int) -> Page:
    """Prefix match on user id, email (case-insensitive) or phone; ordered by user id."""
    statement = select(Recipient).order_by(Recipient.external_id)
    if query:
        statement = statement.where(
            or_(
                Recipient.external_id.startswith(query, autoescape=True),
                func.lower(Recipient.email).startswith(query.lower(), autoescape=True),
                Recipient.phone.startswith(query, autoescape=True),
            )
        )
    return page_of(statement, number)


@dataclass(frozen=True)
class Switch:
    channel: str
    category: str
    enabled: bool
    explicit: bool  # a saved row, not the default


def preference_grid(recipient: Recipient, categories: list[str]) -> list[tuple[str, list[Switch]]]:
    """Rows of (category, one switch per channel), channel-wide ``*`` first; a switch nobody set reads as on."""
    saved = {(p.channel, p.category): p.enabled for p in recipient.preferences}
    return [
        (
            category,
            [
                Switch(channel, category, saved.get((channel, category), True), (channel, category) in saved)
                for channel in CHANNELS
            ],
        )
        for category in [ALL_CATEGORIES, *categories]
    ]


def known_categories(recipient: Recipient) -> list[str]:
    """What can be switched: marketing (the blanket opt-out), template categories, received and saved ones."""
    received = select(Notification.category).where(Notification.recipient_id == recipient.id)
    templated = select(Template.category)
    found = set(db.session.scalars(received.union(templated)))
    found |= {p.category for p in recipient.preferences}
    found.add(MARKETING_CATEGORY)
    found.discard(ALL_CATEGORIES)
    return sorted(c for c in found if c)


def search_suppressions(query: str, number: int) -> Page:
    """The suppression list, newest first; ``query`` is a case-insensitive prefix of the address."""
    statement = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if query:
        statement = statement.where(func.lower(Suppression.address).startswith(query.lower(), autoescape=True))
    return page_of(statement, number)


def recipient_suppressions(recipient: Recipient) -> list[Suppression]:
    pairs = [
        (channel, getattr(recipient, field)) for channel, field in ADDRESS_CHANNELS.items() if getattr(recipient, field)
    ]
    if not pairs:
        return []
    return list(
        db.session.scalars(
            select(Suppression)
            .where(
                or_(
                    *[(Suppression.channel == channel) & (Suppression.address == address) for channel, address in pairs]
                )
            )
            .order_by(Suppression.id)
        )
    )


def workflow_runs(recipient: Recipient) -> list[dict]:
    """The recipient's newest workflow runs, each with its steps' states and what they sent."""
    views = (
        workflow_store.run_view(run_id)
        for run_id in workflow_store.recipient_run_ids(recipient.id, WORKFLOW_RUNS_SHOWN)
    )
    return [run_json(view) for view in views if view is not None]


def notification_history(recipient: Recipient, number: int) -> Page:
    """Newest first, each with its deliveries and their events loaded in two more queries."""
    statement = (
        select(Notification)
        .where(Notification.recipient_id == recipient.id)
        .options(selectinload(Notification.deliveries).selectinload(Delivery.events))
        .order_by(Notification.created_at.desc(), Notification.id.desc())
    )
    return page_of(statement, number, per_page=HISTORY_PER_PAGE)


# -- writes --------------------------------------------------------------------------------------


def set_preference(recipient: Recipient, channel: str, category: str, enabled: bool, actor) -> None:
    row = db.session.get(Preference, (recipient.id, channel, category))
    before = None if row is None else {"channel": channel, "category": category, "enabled": row.enabled}
    if not enabled and (row is None or row.enabled):
        emit(webhook_events.unsubscribed(recipient.external_id, channel, category, "console"))
    if row is None:
        row = Preference(recipient_id=recipient.id, channel=channel, category=category, enabled=enabled)
        db.session.add(row)
    row.enabled = enabled
    row.updated_at = recipient.updated_at = utcnow()
    record_change(
        actor,
        "preference.set",
        "recipient",
        recipient.id,
        before,
        {"channel": channel, "category": category, "enabled": enabled},
    )
    db.session.commit()


def set_hard_stop(recipient: Recipient, enabled: bool, actor) -> None:
    before = {"hard_stop": recipient.hard_stop}
    if enabled and not recipient.hard_stop:
        emit(webhook_events.unsubscribed(recipient.external_id, None, None, "console"))
    recipient.hard_stop = enabled
    recipient.updated_at = utcnow()
    record_change(actor, "recipient.hard_stop", "recipient", recipient.id, before, {"hard_stop": enabled})
    db.session.commit()


def add_suppression(channel: str, address: str, reason: str, actor) -> Suppression | None:
    """The new entry, or None when the address is already suppressed on that channel."""
    address = canonical_address(channel, address)
    entry = Suppression(channel=channel, address=address, reason=reason, created_at=utcnow())
    db.session.add(entry)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return None
    record_change(
        actor,
        "suppression.add",
        "suppression",
        entry.id,
        None,
        {"channel": channel, "address": address, "reason": reason},
    )
    db.session.commit()
    return entry


def remove_suppression(suppression_id: int, actor) -> bool:
    entry = db.session.get(Suppression, suppression_id)
    if entry is None:
        return False
    record_change(
        actor,
        "suppression.remove",
        "suppression",
        entry.id,
        {"channel": entry.channel, "address": entry.address, "reason": entry.reason},
        None,
    )
    db.session.delete(entry)
    db.session.commit()
    return True


def record_inbox_opened(recipient: Recipient, actor) -> None:
    """An admin opened the recipient's own inbox: the audit log says who."""
    record_change(actor, "recipient.open_inbox", "recipient", recipient.id, None, {"user_id": recipient.external_id})
    db.session.commit()
