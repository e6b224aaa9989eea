"""Build rows for tests with sensible defaults; keyword arguments override."""

from __future__ import annotations

import base64
import itertools
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.extensions import db
from app.models import Notification, Recipient, StaffUser, Template, TemplateVersion

_counter = itertools.count(1)


def make_recipient(**fields) -> Recipient:
    number = next(_counter)
    values = {
        "external_id": f"user-{number}",
        "email": f"user{number}@example.com",
        "phone": None,
        "timezone": "Europe/Lisbon",
        "locale": "en",
        "attributes": {},
    }
    values.update(fields)
    recipient = Recipient(**values)
    db.session.add(recipient)
    db.session.commit()
    return recipient


def make_staff(
    email: str = "admin@example.com", password: str = "correct horse battery", role: str = "admin"
) -> StaffUser:
    staff = StaffUser(email=email, role=role)
    staff.set_password(password)
    db.session.add(staff)
    db.session.commit()
    return staff


def make_template(key: str = "welcome", variants: dict | None = None, **fields) -> Template:
    values = {"name": key.replace("_", " ").title(), "category": "general", "type": "transactional"}
    values.update(fields)
    template = Template(key=key, current_version=1, **values)
    template.versions.append(
        TemplateVersion(
            version=1,
            variants=variants
            or {
                "en": {
                    "in_app": {"title": "Hello {{ recipient.id }}", "body": "Welcome aboard."},
                    "email": {"subject": "Welcome", "html": "<p>Welcome aboard.</p>", "text": "Welcome aboard."},
                    "sms": {"text": "Welcome aboard."},
                    "push": {"title": "Welcome", "body": "Welcome aboard."},
                }
            },
        )
    )
    db.session.add(template)
    db.session.commit()
    return template


def make_notification(recipient: Recipient, **fields) -> Notification:
    values = {
        "type": "transactional",
        "category": "general",
        "priority": "normal",
        "title": "Hello",
        "body": "World",
        "data": {},
        "channels": ["in_app"],
    }
    values.update(fields)
    notification = Notification(recipient_id=recipient.id, **values)
    db.session.add(notification)
    db.session.commit()
    return notification


def web_push_keys() -> dict:
    """Keys of a real browser subscription: a fresh P-256 point and a 16-byte auth secret, base64url."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {"p256dh": _b64url(point), "auth": _b64url(os.urandom(16))}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
