"""SMS through a local Twilio API: the request Twilio documents, signed receipts, inbound STOP/START/HELP."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.channels import close_all
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Suppression
from tests.factories import make_recipient
from tests.peers.twilio import TwilioApi, sign

ACCOUNTS = {"AC" + "1" * 32: "token-main", "AC" + "2" * 32: "token-fallback"}
MAIN, FALLBACK = list(ACCOUNTS)


@pytest.fixture
def twilio(app):
    api = TwilioApi(ACCOUNTS).start()
    saved = dict(app.config)
    app.config.update(
        TWILIO_ACCOUNT_SID=MAIN,
        TWILIO_AUTH_TOKEN=ACCOUNTS[MAIN],
        TWILIO_FROM="+15005550006",
        TWILIO_API_BASE=api.url,
        SMS_RATE=0.0,
    )
    close_all()
    yield api
    close_all()
    app.config.clear()
    app.config.update(saved)
    api.stop()


def notify(api, user_id="ana", **fields) -> str:
    body = {
        "user_id": user_id,
        "type": "transactional",
        "category": "orders",
        "channels": ["sms"],
        "title": "Order shipped",
        "body": "Parcel on its way",
    }
    body.update(fields)
    response = api.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.json
    return response.json["id"]


def delivery_of(notification_id: str) -> Delivery:
    db.session.expire_all()
    return db.session.scalar(select(Delivery).where(Delivery.notification_id == notification_id))


def twilio_post(app, client, path: str, form: dict, token: str | None = None, account: str = MAIN):
    form = {"AccountSid": account, **form}
    signature = sign(app.config["BASE_URL"] + path, form, token or ACCOUNTS[account])
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature})


def test_sms_goes_out_in_twilios_shape_and_a_signed_receipt_marks_it_delivered(app, api, client, run_jobs, twilio):
    make_recipient(external_id="ana", phone="+351912345678")
    notification_id = notify(api)
    run_jobs()
    [sent] = twilio.messages
    assert sent["To"] == "+351912345678" and sent["From"] == "+15005550006" and sent["AccountSid"] == MAIN
    assert sent["Body"] == "Order shipped: Parcel on its way"
    assert sent["StatusCallback"] == f"{app.config['BASE_URL']}/webhooks/sms/status"
    delivery = delivery_of(notification_id)
    assert (delivery.status, delivery.provider_message_id) == ("DISPATCHED", sent["sid"])

    assert (
        twilio_post(
            app, client, "/webhooks/sms/status", {"MessageSid": sent["sid"], "MessageStatus": "sent"}
        ).status_code
        == 204
    )
    assert delivery_of(notification_id).status == "DISPATCHED", "progress statuses do not settle it"
    response = twilio_post(
        app, client, "/webhooks/sms/status", {"MessageSid": sent["sid"], "MessageStatus": "delivered"}
    )
    assert response.status_code == 204
    delivery = delivery_of(notification_id)
    assert delivery.status == "DELIVERED" and delivery.delivered_at is not None
    events = db.session.scalars(select(DeliveryEvent.detail).where(DeliveryEvent.delivery_id == delivery.id)).all()
    assert events[-1] == "receipt: delivered"
    twilio_post(app, client, "/webhooks/sms/status", {"MessageSid": sent["sid"], "MessageStatus": "failed"})
    assert delivery_of(notification_id).status == "DELIVERED", "a late, out-of-order receipt changes nothing"


def test_receipt_with_a_bad_or_missing_signature_is_403_and_changes_nothing(app, api, client, run_jobs, twilio):
    make_recipient(external_id="ana", phone="+351912345678")
    notification_id = notify(api)
    run_jobs()
    sid = twilio.messages[0]["sid"]
    forged = twilio_post(
        app, client, "/webhooks/sms/status", {"MessageSid": sid, "MessageStatus": "delivered"}, token="guess"
    )
    unsigned = client.post(
        "/webhooks/sms/status", data={"AccountSid": MAIN, "MessageSid": sid, "MessageStatus": "delivered"}
    )
    unknown_account = twilio_post(
        app,
        client,
        "/webhooks/sms/status",
        {"MessageSid": sid, "MessageStatus": "delivered"},
        token="x",
        account="AC" + "9" * 32,
    )
    assert (forged.status_code, unsigned.status_code, unknown_account.status_code) == (403, 403, 403)
    assert delivery_of(notification_id).status == "DISPATCHED"


def test_undelivered_to_a_dead_number_fails_the_delivery_and_suppresses_the_number(app, api, client, run_jobs, twilio):
    make_recipient(external_id="ana", phone="+351912345678")
    notification_id = notify(api)
    run_jobs()
    form = {
        "MessageSid": twilio.messages[0]["sid"],
        "MessageStatus": "undelivered",
        "ErrorCode": "30006",
        "To": "+351912345678",
        "ErrorMessage": "Landline or unreachable carrier",
    }
    assert twilio_post(app, client, "/webhooks/sms/status", form).status_code == 204
    delivery = delivery_of(notification_id)
    assert (delivery.status, delivery.error_code) == ("FAILED", "twilio_30006")
    assert db.session.scalar(select(Suppression.address).where(Suppression.channel == "sms")) == "+351912345678"


def test_stop_blocks_every_later_sms_even_security_and_start_lifts_it(app, api, client, run_jobs, twilio):
    make_recipient(external_id="ana", phone="+351912345678")
    reply = twilio_post(app, client, "/webhooks/sms/inbound", {"From": "+351912345678", "Body": " stop "})
    assert reply.status_code == 200 and reply.mimetype == "text/xml"
    suppression = db.session.scalar(select(Suppression))
    assert (suppression.channel, suppression.address, suppression.reason) == ("sms", "+351912345678", "STOP")
    blocked = notify(api, type="security", category="login", title="New sign-in", body="Was it you?")
    run_jobs()
    assert (delivery_of(blocked).status, delivery_of(blocked).reason) == ("SUPPRESSED", "suppressed_address")
    assert twilio.messages == []

    twilio_post(app, client, "/webhooks/sms/inbound", {"From": "+351912345678", "Body": "START"})
    assert db.session.scalar(select(Suppression)) is None
    allowed = notify(api)
    run_jobs()
    assert delivery_of(allowed).status == "DISPATCHED" and len(twilio.messages) == 1


def test_help_is_answered_with_a_twiml_help_message_and_changes_nothing(app, client, twilio):
    reply = twilio_post(app, client, "/webhooks/sms/inbound", {"From": "+351912345678", "Body": "help"})
    assert reply.status_code == 200
    assert reply.get_data(as_text=True) == (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{app.config["SMS_HELP_TEXT"]}</Message></Response>'
    )
    assert db.session.scalar(select(Suppression)) is None


def test_inbound_stop_with_a_bad_signature_is_403_and_opts_nobody_out(app, client, twilio):
    reply = twilio_post(app, client, "/webhooks/sms/inbound", {"From": "+351912345678", "Body": "STOP"}, token="forged")
    assert reply.status_code == 403
    assert db.session.scalar(select(Suppression)) is None


def test_marketing_sms_goes_only_to_recipients_who_opted_in(api, run_jobs, twilio):
    make_recipient(external_id="ana", phone="+351912345678")
    make_recipient(external_id="bea", phone="+351912345679")
    response = api.put(
        "/v1/users/bea/preferences",
        json={"preferences": [{"channel": "sms", "category": "marketing", "enabled": True}]},
    )
    assert response.status_code == 200, response.json
    to_ana = notify(api, "ana", type="marketing", category="promotions", title="Sale", body="50% off")
    to_bea = notify(api, "bea", type="marketing", category="promotions", title="Sale", body="50% off")
    run_jobs()
    assert (delivery_of(to_ana).status, delivery_of(to_ana).reason) == ("SUPPRESSED", "no_marketing_sms_opt_in")
    assert delivery_of(to_bea).status == "DISPATCHED"
    assert [m["To"] for m in twilio.messages] == ["+351912345679"]


def test_main_account_down_fails_over_to_the_fallback_account(app, api, run_jobs, twilio):
    app.config.update(
        TWILIO_FALLBACK_ACCOUNT_SID=FALLBACK,
        TWILIO_FALLBACK_AUTH_TOKEN=ACCOUNTS[FALLBACK],
        TWILIO_FALLBACK_FROM="+15005550007",
    )
    twilio.fail_account[MAIN] = (503, {"code": 20503, "message": "Service unavailable", "status": 503})
    make_recipient(external_id="ana", phone="+351912345678")
    notification_id = notify(api)
    run_jobs()
    [sent] = twilio.messages
    assert (sent["AccountSid"], sent["From"]) == (FALLBACK, "+15005550007")
    delivery = delivery_of(notification_id)
    assert (delivery.status, delivery.provider, delivery.attempts) == ("DISPATCHED", "twilio-fallback", 1)


def test_twilio_429_is_retried_after_the_retry_after_it_asked_for(app, api, run_jobs, twilio):
    twilio.fail_next.append(
        (429, {"Retry-After": "30"}, {"code": 20429, "message": "Too Many Requests", "status": 429})
    )
    make_recipient(external_id="ana", phone="+351912345678")
    notification_id = notify(api)
    run_jobs()
    delivery = delivery_of(notification_id)
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("PENDING", 1, "http_429")
    assert (delivery.not_before - delivery.updated_at).total_seconds() >= 29
