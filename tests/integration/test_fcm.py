"""Android push through a local FCM v1 + OAuth2 token endpoint; mixed iOS/Android fan-out."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from app.channels import close_all
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Device
from tests.factories import make_recipient
from tests.integration.test_apns import apns, notify, register  # noqa: F401  (apns is a fixture)
from tests.peers.fcm import FcmService, fcm_error

ANDROID = "f" * 20 + ":APA91b" + "x" * 40
OTHER_ANDROID = "e" * 20 + ":APA91b" + "y" * 40
IOS = "b" * 64


@pytest.fixture
def fcm(app, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = "herald@project-p.iam.gserviceaccount.com"
    service = FcmService("project-p", email, key.public_key()).start()
    account_file = tmp_path / "service-account.json"
    account_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "project-p",
                "private_key_id": "k1",
                "client_email": email,
                "client_id": "1",
                "token_uri": service.token_uri,
                "private_key": key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ).decode(),
            }
        )
    )
    saved = dict(app.config)
    app.config.update(FCM_BASE=service.url, FCM_PROJECT_ID="project-p", FCM_SERVICE_ACCOUNT_FILE=str(account_file))
    close_all()
    yield service
    close_all()
    app.config.clear()
    app.config.update(saved)
    service.stop()


def delivery_of(notification_id: str) -> Delivery:
    db.session.expire_all()
    return db.session.scalar(select(Delivery).where(Delivery.notification_id == notification_id))


def test_fcm_gets_the_v1_message_with_a_bearer_token_it_issued(api, run_jobs, fcm):
    make_recipient(external_id="ana")
    register(api, "ana", "android", ANDROID)
    first = notify(api, priority="critical", collapse_key="order-42")
    notify(api)
    run_jobs()
    message = fcm.messages[0]
    assert message["token"] == ANDROID
    assert message["notification"] == {"title": "Order shipped", "body": "Parcel on its way"}
    assert message["android"] == {"priority": "HIGH", "collapse_key": "order-42"}
    assert message["data"] == {"url": "app://orders/42", "notification_id": first}
    assert len(fcm.messages) == 2 and fcm.token_requests == 1, "the access token is reused until near expiry"
    delivery = delivery_of(first)
    assert delivery.status == "DISPATCHED" and delivery.provider_message_id.startswith("projects/project-p/messages/")


@pytest.mark.parametrize(("trap", "code"), [("unregistered", "UNREGISTERED"), ("invalid", "INVALID_ARGUMENT")])
def test_dead_registration_token_is_deactivated(api, run_jobs, fcm, trap, code):
    make_recipient(external_id="ana")
    device_id = register(api, "ana", "android", ANDROID)
    getattr(fcm, trap).add(ANDROID)
    notification_id = notify(api)
    run_jobs()
    delivery = delivery_of(notification_id)
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("FAILED", 1, code)
    device = db.session.get(Device, device_id)
    assert device.active is False and device.deactivated_reason == f"fcm: {code}"


def test_invalid_argument_about_the_message_does_not_kill_the_token(api, run_jobs, fcm):
    make_recipient(external_id="ana")
    register(api, "ana", "android", ANDROID)
    fcm.fail_next.append(
        (400, {}, fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "bad ttl", "message.android.ttl"))
    )
    notification_id = notify(api)
    run_jobs()
    assert (delivery_of(notification_id).status, delivery_of(notification_id).error_code) == (
        "FAILED",
        "INVALID_ARGUMENT",
    )
    assert db.session.scalar(select(Device.active)) is True


def test_quota_exceeded_waits_for_the_retry_after_fcm_sent(api, run_jobs, fcm):
    make_recipient(external_id="ana")
    register(api, "ana", "android", ANDROID)
    fcm.fail_next.append((429, {"Retry-After": "45"}, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "quota")))
    notification_id = notify(api)
    run_jobs()
    delivery = delivery_of(notification_id)
    assert (delivery.status, delivery.error_code) == ("PENDING", "QUOTA_EXCEEDED")
    assert (delivery.not_before - delivery.updated_at).total_seconds() >= 44


def test_push_reaches_every_device_and_a_dead_one_does_not_fail_the_delivery(api, run_jobs, fcm, apns):  # noqa: F811
    make_recipient(external_id="ana")
    dead_ios = register(api, "ana", "ios", IOS)
    android = register(api, "ana", "android", ANDROID)
    other_android = register(api, "ana", "android", OTHER_ANDROID)
    apns.unregistered.add(IOS)
    notification_id = notify(api)
    run_jobs()
    delivery = delivery_of(notification_id)
    assert delivery.status == "DISPATCHED" and delivery.attempts == 1
    assert sorted(m["token"] for m in fcm.messages) == sorted([ANDROID, OTHER_ANDROID])
    assert [d.active for d in db.session.scalars(select(Device).order_by(Device.id))] == [False, True, True]
    detail = db.session.scalars(select(DeliveryEvent.detail).where(DeliveryEvent.delivery_id == delivery.id)).all()[-1]
    assert f"device {dead_ios}: apns token_gone Unregistered (deactivated)" in detail
    assert f"device {android}: fcm ok" in detail and f"device {other_android}: fcm ok" in detail


def test_push_to_a_recipient_whose_only_devices_failed_transiently_is_retried_whole(api, run_jobs, fcm):
    make_recipient(external_id="ana")
    register(api, "ana", "android", ANDROID)
    fcm.fail_next.append((503, {}, fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", "try later")))
    notification_id = notify(api)
    run_jobs()
    delivery = delivery_of(notification_id)
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("PENDING", 1, "UNAVAILABLE")
