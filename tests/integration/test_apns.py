"""iOS push through a local HTTP/2 APNs that verifies the provider JWT and answers in Apple's shapes."""

from __future__ import annotations

import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from app.channels import DeviceTarget, Message, Outcome, close_all
from app.channels.apns import ApnsClient
from app.channels.http import run_sync
from app.extensions import db
from app.models import Delivery, Device
from tests.factories import make_recipient
from tests.peers.apns import ApnsServer

TOKEN = "a" * 64


@pytest.fixture
def apns(app, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "AuthKey_ABC123DEFG.p8"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ApnsServer(key.public_key(), team_id="TEAM123456", key_id="ABC123DEFG", topic="com.example.app").start()
    saved = dict(app.config)
    app.config.update(
        APNS_BASE=server.url,
        APNS_TEAM_ID="TEAM123456",
        APNS_KEY_ID="ABC123DEFG",
        APNS_KEY_FILE=str(key_file),
        APNS_TOPIC="com.example.app",
    )
    close_all()
    yield server
    close_all()
    app.config.clear()
    app.config.update(saved)
    server.stop()


def register(api, user_id: str, platform: str, token: str) -> int:
    response = api.post(f"/v1/users/{user_id}/devices", json={"platform": platform, "token": token})
    assert response.status_code == 201, response.json
    return response.json["id"]


def notify(api, user_id="ana", **fields) -> str:
    body = {
        "user_id": user_id,
        "type": "transactional",
        "category": "orders",
        "channels": ["push"],
        "title": "Order shipped",
        "body": "Parcel on its way",
        "data": {"url": "app://orders/42"},
    }
    body.update(fields)
    response = api.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.json
    return response.json["id"]


def delivery_of(notification_id: str) -> Delivery:
    db.session.expire_all()
    return db.session.scalar(select(Delivery).where(Delivery.notification_id == notification_id))


def test_apns_gets_a_verified_jwt_the_documented_headers_and_the_alert(api, run_jobs, apns):
    make_recipient(external_id="ana")
    register(api, "ana", "ios", TOKEN)
    notification_id = notify(api, priority="high", collapse_key="order-42")
    run_jobs()
    [request] = apns.requests
    headers = request["headers"]
    assert request["token"] == TOKEN and request["claims"]["iss"] == "TEAM123456"
    assert (
        headers["apns-topic"],
        headers["apns-push-type"],
        headers["apns-priority"],
        headers["apns-collapse-id"],
    ) == ("com.example.app", "alert", "10", "order-42")
    assert uuid.UUID(headers["apns-id"])
    assert request["payload"]["aps"]["alert"] == {"title": "Order shipped", "body": "Parcel on its way"}
    assert request["payload"]["url"] == "app://orders/42" and request["payload"]["id"] == notification_id
    delivery = delivery_of(notification_id)
    assert (delivery.status, delivery.provider_message_id) == ("DISPATCHED", headers["apns-id"])


def test_normal_priority_goes_at_priority_5(api, run_jobs, apns):
    make_recipient(external_id="ana")
    register(api, "ana", "ios", TOKEN)
    notify(api, priority="normal")
    run_jobs()
    assert apns.requests[0]["headers"]["apns-priority"] == "5"


def test_provider_jwt_is_reused_then_renewed_once_it_is_old(app, apns):
    client = ApnsClient(app.config)
    message = Message(
        delivery_id=1,
        recipient_id=1,
        notification_id="n1",
        channel="push",
        idempotency_key="herald-n1-push",
        recipient_external_id="ana",
        notification_type="transactional",
        category="orders",
        priority="normal",
        content={"title": "Hi", "body": "There"},
    )
    device = DeviceTarget(1, "ios", TOKEN)
    assert run_sync(client.send(device, message)).outcome is Outcome.DISPATCHED
    assert run_sync(client.send(device, message)).outcome is Outcome.DISPATCHED
    assert len(apns.tokens_seen) == 1, "one JWT for both sends"
    issued, token = client._jwt
    client._jwt = (issued - 51 * 60, token)  # as if signed 51 minutes ago
    assert run_sync(client.send(device, message)).outcome is Outcome.DISPATCHED
    assert len(apns.tokens_seen) == 2 and time.time() - apns.requests[-1]["claims"]["iat"] < 60
    client.close()


@pytest.mark.parametrize(("trap", "reason"), [("unregistered", "Unregistered"), ("bad_tokens", "BadDeviceToken")])
def test_dead_token_is_deactivated_and_the_delivery_fails_without_retry(api, run_jobs, apns, trap, reason):
    make_recipient(external_id="ana")
    device_id = register(api, "ana", "ios", TOKEN)
    getattr(apns, trap).add(TOKEN)
    notification_id = notify(api)
    run_jobs()
    delivery = delivery_of(notification_id)
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("FAILED", 1, reason)
    device = db.session.get(Device, device_id)
    assert device.active is False and device.deactivated_reason == f"apns: {reason}"


def test_payload_over_4kb_is_refused_before_anything_is_sent(api, run_jobs, apns):
    make_recipient(external_id="ana")
    register(api, "ana", "ios", TOKEN)
    notification_id = notify(api, data={"blob": "x" * 5000})
    run_jobs()
    delivery = delivery_of(notification_id)
    assert (delivery.status, delivery.error_code) == ("FAILED", "payload_too_large")
    assert apns.requests == [] and apns.connections == 0
    assert db.session.scalar(select(Device.active)) is True, "the token is fine; the message was not"


@pytest.mark.parametrize(
    ("status", "reason"), [(429, "TooManyRequests"), (503, "ServiceUnavailable"), (500, "InternalServerError")]
)
def test_throttling_and_server_errors_are_retried_later(api, run_jobs, apns, status, reason):
    make_recipient(external_id="ana")
    register(api, "ana", "ios", TOKEN)
    apns.fail_next.append((status, reason, {}))
    notification_id = notify(api)
    run_jobs()
    delivery = delivery_of(notification_id)
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("PENDING", 1, reason)
    assert db.session.scalar(select(Device.active)) is True
