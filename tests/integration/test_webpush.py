"""Web push end to end: registered over the API, encrypted by Herald, decrypted by a local push service."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.channels import close_all
from app.channels.vapid import application_server_key
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Device, Notification
from tests.factories import make_recipient
from tests.peers.webpush import WebPushService


@pytest.fixture
def push_service(app):
    service = WebPushService().start()
    close_all()
    # The local push service stands in for one on the operator's network, which the setting lets Herald call.
    app.config["WEB_PUSH_PRIVATE_HOSTS"] = frozenset({"127.0.0.1"})
    yield service
    close_all()
    app.config["WEB_PUSH_PRIVATE_HOSTS"] = frozenset()
    service.stop()


def subscribe(api, user_id: str, subscription) -> int:
    response = api.post(
        f"/v1/users/{user_id}/devices", json={"platform": "web", "subscription": subscription.to_json()}
    )
    assert response.status_code == 201, response.json
    return response.json["id"]


def notify(api, user_id: str = "ana", **fields) -> str:
    body = {
        "user_id": user_id,
        "type": "transactional",
        "category": "orders",
        "channels": ["web_push"],
        "title": "Order shipped",
        "body": "Your parcel is on its way",
        "data": {"url": "https://shop.example/orders/42", "order": 42},
    }
    body.update(fields)
    response = api.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.json
    return response.json["id"]


def delivery_of(notification_id: str) -> Delivery:
    db.session.expire_all()
    return db.session.scalar(select(Delivery).where(Delivery.notification_id == notification_id))


def test_push_service_decrypts_exactly_the_notification_with_its_deep_link(app, api, client, run_jobs, push_service):
    make_recipient(external_id="ana")
    subscribe(api, "ana", push_service.subscribe("ana-laptop"))
    notification_id = notify(api, priority="high", collapse_key="order-42")
    run_jobs()
    [received] = push_service.received
    tracked = received["payload"]["url"]
    assert received["payload"] == {
        "id": notification_id,
        "title": "Order shipped",
        "body": "Your parcel is on its way",
        "category": "orders",
        "url": tracked,
        "tag": "order-42",
        "data": {"url": tracked, "order": 42},
    }
    # A tap opens Herald's tracked link, which counts the click and leads to the deep link.
    assert tracked.startswith(f"{app.config['BASE_URL']}/c/")
    response = client.get(tracked.removeprefix(app.config["BASE_URL"]))
    assert (response.status_code, response.headers["Location"]) == (302, "https://shop.example/orders/42")
    clicked = db.session.get(Notification, notification_id)
    db.session.refresh(clicked)
    assert clicked.clicked_at is not None and clicked.clicked_channel == "web_push"
    assert received["vapid"]["k"] == application_server_key(app.instance_path), "signed with the instance's VAPID key"
    assert received["vapid"]["aud"] == push_service.url
    assert (received["urgency"], received["topic"], received["ttl"]) == ("high", "order-42", "86400")
    delivery = delivery_of(notification_id)
    assert delivery.status == "DISPATCHED" and delivery.provider_message_id == f"{push_service.url}/message/1"


def test_gone_subscription_is_deactivated_at_once_and_never_tried_again(api, run_jobs, push_service):
    make_recipient(external_id="ana")
    device_id = subscribe(api, "ana", push_service.subscribe("old-browser"))
    push_service.status_for["/push/old-browser"] = 410
    first = notify(api)
    run_jobs()
    delivery = delivery_of(first)
    assert (delivery.status, delivery.attempts) == ("FAILED", 1), "410 is not retried"
    device = db.session.get(Device, device_id)
    assert device.active is False and "http_410" in device.deactivated_reason
    second = notify(api)
    run_jobs()
    assert delivery_of(second).status == "SUPPRESSED" and delivery_of(second).reason == "unreachable"


def test_one_dead_subscription_does_not_fail_the_delivery_to_the_other_browser(api, run_jobs, push_service):
    make_recipient(external_id="ana")
    dead = subscribe(api, "ana", push_service.subscribe("phone"))
    alive = subscribe(api, "ana", push_service.subscribe("laptop"))
    push_service.status_for["/push/phone"] = 404
    notification_id = notify(api)
    run_jobs()
    delivery = delivery_of(notification_id)
    assert delivery.status == "DISPATCHED"
    assert [r["path"] for r in push_service.received] == ["/push/laptop"]
    assert db.session.get(Device, dead).active is False and db.session.get(Device, alive).active is True
    detail = db.session.scalars(select(DeliveryEvent.detail).where(DeliveryEvent.delivery_id == delivery.id)).all()[-1]
    assert f"device {dead}:" in detail and "(deactivated)" in detail and f"device {alive}:" in detail


def test_a_private_endpoint_stored_behind_registrations_back_is_refused_at_send_time(app, api, run_jobs, push_service):
    recipient = make_recipient(external_id="ana")
    subscription = push_service.subscribe("sneaky")
    keys = subscription.to_json()["keys"]
    for endpoint in ("https://10.0.0.5/push/x", "https://169.254.169.254/latest/meta-data"):
        db.session.add(
            Device(recipient_id=recipient.id, platform="web", token=endpoint, p256dh=keys["p256dh"], auth=keys["auth"])
        )
    db.session.commit()
    notification_id = notify(api)
    run_jobs()
    delivery = delivery_of(notification_id)
    assert (delivery.status, delivery.error_code) == ("FAILED", "endpoint_refused")
    assert push_service.received == [] and push_service.connections == 0
    assert not db.session.scalars(select(Device.active)).all()[0]


def test_a_private_push_service_is_refused_unless_the_operator_lists_its_host(app, api, run_jobs, push_service):
    make_recipient(external_id="ana")
    subscribe(api, "ana", push_service.subscribe("local"))
    app.config["WEB_PUSH_PRIVATE_HOSTS"] = frozenset({"push.lan"})
    notification_id = notify(api)
    run_jobs()
    assert delivery_of(notification_id).error_code == "endpoint_refused"
    assert push_service.connections == 0


def test_registration_rejects_a_non_https_or_private_endpoint_with_400(api, push_service):
    make_recipient(external_id="ana")
    keys = push_service.subscribe("x").to_json()["keys"]
    for endpoint in ("http://push.example.com/x", "https://192.168.1.10/x", "https://printer.local/x"):
        response = api.post(
            "/v1/users/ana/devices", json={"platform": "web", "subscription": {"endpoint": endpoint, "keys": keys}}
        )
        assert response.status_code == 400, endpoint
