"""Recipient profile, preferences, devices and erasure: the writes behind /v1/users."""

from __future__ import annotations

from sqlalchemy import delete, select

from app.delivery import routing
from app.device_schemas import DeviceCreate
from app.extensions import db
from app.models import AuditEntry, Device, DigestPreference, Preference, Recipient
from app.models.types import utcnow
from app.outbound_webhooks import events as webhook_events
from app.outbound_webhooks.outbox import emit
from app.schemas import Preferences, PreferencesUpdate, UserUpsert
from app.workflows.digest_frequency import DEFAULT


def find_recipient(external_id: str) -> Recipient | None:
    return db.session.scalar(select(Recipient).where(Recipient.external_id == external_id))


def upsert_recipient(external_id: str, fields: UserUpsert) -> tuple[Recipient, bool]:
    """Create or update; only the fields present in the request change. Returns (recipient, created)."""
    recipient = find_recipient(external_id)
    created = recipient is None
    if created:
        recipient = Recipient(external_id=external_id, locale="en", attributes={})
        db.session.add(recipient)
    given = fields.model_fields_set
    for name in ("email", "phone", "timezone", "locale", "attributes"):
        if name in given:
            value = getattr(fields, name)
            if name == "locale" and value is None:
                value = "en"
            if name == "attributes" and value is None:
                value = {}
            setattr(recipient, name, value)
    if "quiet_hours" in given:
        recipient.quiet_start, recipient.quiet_end = (
            fields.quiet_hours.as_times() if fields.quiet_hours else (None, None)
        )
    recipient.updated_at = utcnow()
    db.session.commit()
    return recipient, created


def erase_recipient(recipient: Recipient, actor: str) -> None:
    """GDPR erasure: the recipient and everything about them (notifications, devices, preferences) goes.

    The audit entry keeps only the internal id: the erasure is provable, the person is not identifiable.
    """
    db.session.add(
        AuditEntry(
            actor=actor,
            action="recipient.erase",
            target_type="recipient",
            target_id=str(recipient.id),
            before=None,
            after=None,
        )
    )
    db.session.delete(recipient)
    db.session.commit()


def set_preferences(recipient: Recipient, update: PreferencesUpdate) -> None:
    """Upsert each (channel, category) switch; takes effect for the very next notification."""
    existing = {(p.channel, p.category): p for p in recipient.preferences}
    before = {switch: row.enabled for switch, row in existing.items()}
    after = {(item.channel, item.category): item.enabled for item in update.preferences}
    facts = [
        fact
        for channel, category in webhook_events.switched_off(before, after, routing.switch_default)
        for fact in webhook_events.unsubscribed(recipient.external_id, channel, category, "preferences")
    ]
    if update.hard_stop and not recipient.hard_stop:
        facts += webhook_events.unsubscribed(recipient.external_id, None, None, "preferences")
    emit(facts)
    for item in update.preferences:
        row = existing.get((item.channel, item.category))
        if row is None:
            row = Preference(
                recipient_id=recipient.id, channel=item.channel, category=item.category, enabled=item.enabled
            )
            db.session.add(row)
            existing[(item.channel, item.category)] = row
        else:
            row.enabled = item.enabled
    _set_digests(recipient, update)
    if update.quiet_hours is not None:
        recipient.quiet_start, recipient.quiet_end = update.quiet_hours.as_times()
    elif update.clear_quiet_hours:
        recipient.quiet_start = recipient.quiet_end = None
    if update.hard_stop is not None:
        recipient.hard_stop = update.hard_stop
    recipient.updated_at = utcnow()
    db.session.commit()


def _set_digests(recipient: Recipient, update: PreferencesUpdate) -> None:
    """Upsert each category's digest frequency; ``default`` removes the choice."""
    existing = {row.category: row for row in recipient.digest_preferences}
    for item in update.digests:
        row = existing.get(item.category)
        if item.frequency == DEFAULT:
            if row is not None:
                recipient.digest_preferences.remove(row)
                del existing[item.category]
        elif row is None:
            row = DigestPreference(recipient_id=recipient.id, category=item.category, frequency=item.frequency)
            recipient.digest_preferences.append(row)
            existing[item.category] = row
        else:
            row.frequency = item.frequency


def preferences_of(r: Recipient) -> dict:
    """``GET /v1/users/{id}/preferences``: switches, digest frequencies, quiet hours, hard stop."""
    quiet = (
        {"start": r.quiet_start.strftime("%H:%M"), "end": r.quiet_end.strftime("%H:%M")}
        if r.quiet_start and r.quiet_end
        else None
    )
    items = [
        {"channel": p.channel, "category": p.category, "enabled": p.enabled}
        for p in sorted(r.preferences, key=lambda p: (p.channel, p.category))
    ]
    digests = [
        {"category": d.category, "frequency": d.frequency}
        for d in sorted(r.digest_preferences, key=lambda d: d.category)
    ]
    return Preferences.model_validate(
        {"preferences": items, "digests": digests, "quiet_hours": quiet, "hard_stop": r.hard_stop}
    ).model_dump(mode="json")


def register_device(recipient: Recipient, fields: DeviceCreate) -> tuple[Device, bool]:
    """Register a token or subscription. A token seen on another recipient moves here: one owner at a time."""
    token = fields.subscription.endpoint if fields.subscription else fields.token
    device = db.session.scalar(select(Device).where(Device.token == token))
    created = device is None
    if created:
        device = Device(token=token)
        db.session.add(device)
    device.recipient_id = recipient.id
    device.platform = fields.platform
    device.p256dh = fields.subscription.keys.p256dh if fields.subscription else None
    device.auth = fields.subscription.keys.auth if fields.subscription else None
    device.active = True
    device.deactivated_reason = None
    device.last_seen_at = utcnow()
    db.session.commit()
    return device, created


def remove_device(recipient: Recipient, device_id: int) -> bool:
    result = db.session.execute(delete(Device).where(Device.id == device_id, Device.recipient_id == recipient.id))
    db.session.commit()
    return result.rowcount == 1
