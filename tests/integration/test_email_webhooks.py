"""SendGrid Event Webhook: ECDSA-signed bounce and complaint events feed the email suppression list."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from app.extensions import db
from app.models import Delivery, Suppression
from tests.factories import make_recipient

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


@pytest.fixture
def sendgrid_key(app):
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = base64.b64encode(public).decode()
    yield key
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = None


def post_events(client, key, events: list[dict], tamper: bool = False):
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    signature = base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    if tamper:
        body = body.replace(b"bounce", b"bouncf")
    return client.post(
        "/webhooks/email/sendgrid",
        data=body,
        content_type="application/json",
        headers={SIGNATURE: signature, TIMESTAMP: timestamp},
    )


def event(kind: str, email: str, **fields) -> dict:
    return {
        "email": email,
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": "e1",
        "sg_message_id": "m1.filter0001",
        **fields,
    }


def test_hard_bounce_and_complaint_suppress_the_address_but_a_soft_block_does_not(client, sendgrid_key):
    response = post_events(
        client,
        sendgrid_key,
        [
            event("bounce", "gone@example.com", type="bounce", reason="550 5.1.1 user unknown", status="5.1.1"),
            event("spamreport", "angry@example.com"),
            event("bounce", "busy@example.com", type="blocked", reason="421 try later", status="4.0.0"),
            event("delivered", "fine@example.com", response="250 OK"),
        ],
    )
    assert response.status_code == 200 and response.json["suppressed"] == 2
    rows = {s.address: s.reason for s in db.session.scalars(select(Suppression).where(Suppression.channel == "email"))}
    assert rows == {"gone@example.com": "hard bounce (sendgrid)", "angry@example.com": "complaint (sendgrid)"}


def test_a_suppressed_address_gets_no_later_mail_of_any_type(api, client, run_jobs, sendgrid_key):
    make_recipient(external_id="ana", email="gone@example.com")
    post_events(client, sendgrid_key, [event("bounce", "gone@example.com", type="bounce")])
    response = api.post(
        "/v1/notifications",
        json={
            "user_id": "ana",
            "type": "security",
            "category": "login",
            "channels": ["email"],
            "title": "New sign-in",
            "body": "Was it you?",
        },
    )
    run_jobs()
    delivery = db.session.scalar(select(Delivery).where(Delivery.notification_id == response.json["id"]))
    assert (delivery.status, delivery.reason) == ("SUPPRESSED", "suppressed_address")


def test_bounce_settles_the_delivery_it_names_by_message_id(api, client, run_jobs, smtp_server, sendgrid_key):
    make_recipient(external_id="ana", email="gone@example.com")
    response = api.post(
        "/v1/notifications",
        json={
            "user_id": "ana",
            "type": "transactional",
            "category": "orders",
            "channels": ["email"],
            "title": "Receipt",
            "body": "Thanks",
        },
    )
    run_jobs()
    message_id = smtp_server.messages[0]["Message-ID"]
    post_events(
        client,
        sendgrid_key,
        [event("bounce", "gone@example.com", type="bounce", reason="550 user unknown", **{"smtp-id": message_id})],
    )
    db.session.expire_all()
    delivery = db.session.scalar(select(Delivery).where(Delivery.notification_id == response.json["id"]))
    assert (delivery.status, delivery.error_code, delivery.last_error) == (
        "FAILED",
        "sendgrid_bounce",
        "550 user unknown",
    )


@pytest.mark.parametrize("forgery", ["tampered_body", "wrong_key", "no_headers"])
def test_an_unverifiable_event_post_is_403_and_suppresses_nobody(client, sendgrid_key, forgery):
    events = [event("bounce", "victim@example.com", type="bounce")]
    if forgery == "tampered_body":
        response = post_events(client, sendgrid_key, events, tamper=True)
    elif forgery == "wrong_key":
        response = post_events(client, ec.generate_private_key(ec.SECP256R1()), events)
    else:
        response = client.post("/webhooks/email/sendgrid", json=events)
    assert response.status_code == 403
    assert db.session.scalar(select(Suppression)) is None


def test_unknown_email_provider_is_404(client, sendgrid_key):
    assert client.post("/webhooks/email/mailgun", json=[]).status_code == 404
