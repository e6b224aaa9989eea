"""SES bounces and complaints through a signed SNS subscription: signatures v1/v2, certificate URL rules, confirmation."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from app.delivery.sns import aws_url
from app.extensions import db
from app.models import Delivery, Suppression
from app.webhooks import ses as ses_webhook
from tests.factories import make_notification, make_recipient
from tests.integration.test_email_webhooks import event, post_events
from tests.peers.sns import SnsPeer

TOPIC = "arn:aws:sns:eu-west-1:123456789012:herald-ses"


@pytest.fixture
def sns(app):
    peer = SnsPeer(TOPIC).start()
    saved = dict(app.config)
    app.config.update(SES_SNS_TOPIC_ARNS=(TOPIC,), SNS_TEST_CERT_PREFIX=peer.url + "/")
    ses_webhook._certificates.clear()
    yield peer
    ses_webhook._certificates.clear()
    app.config.clear()
    app.config.update(saved)
    peer.stop()


def post(client, message: dict):
    return client.post(
        "/webhooks/email/ses", data=json.dumps(message), headers={"Content-Type": "text/plain; charset=UTF-8"}
    )


def bounce(address: str, message_id: str = "0100-msg", bounce_type: str = "Permanent") -> dict:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1"}],
        },
        "mail": {"messageId": message_id, "destination": [address]},
    }


def dispatched_delivery(address: str, message_id: str) -> int:
    recipient = make_recipient(external_id="ana", email=address)
    note = make_notification(recipient)
    delivery = Delivery(
        notification_id=note.id, channel="email", status="DISPATCHED", provider="ses", provider_message_id=message_id
    )
    db.session.add(delivery)
    db.session.commit()
    return delivery.id


def suppressed() -> dict[str, str]:
    db.session.expire_all()
    return {s.address: s.reason for s in db.session.scalars(select(Suppression).where(Suppression.channel == "email"))}


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_hard_bounce_suppresses_the_address_and_fails_the_delivery(app, client, sns, version):
    delivery_id = dispatched_delivery("ana@example.com", "0100-msg")
    response = post(client, sns.notification(bounce("Ana@Example.com"), version=version))
    assert response.status_code == 200, response.json
    assert response.json == {"type": "bounce", "suppressed": 1, "settled": True}
    assert suppressed() == {"ana@example.com": "hard bounce (ses)"}
    delivery = db.session.get(Delivery, delivery_id)
    assert (delivery.status, delivery.error_code) == ("FAILED", "ses_bounce")


def test_a_complaint_suppresses_like_sendgrids_and_a_transient_bounce_does_not(app, client, sns):
    complaint = {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "bo@example.com"}], "complaintFeedbackType": "abuse"},
        "mail": {"messageId": "0100-other"},
    }
    assert post(client, sns.notification(complaint)).json["suppressed"] == 1
    assert post(client, sns.notification(bounce("cy@example.com", bounce_type="Transient"))).json["suppressed"] == 0
    assert suppressed() == {"bo@example.com": "complaint (ses)"}


def test_a_delivery_notification_settles_the_message_as_delivered(app, client, sns):
    delivery_id = dispatched_delivery("ana@example.com", "0100-ok")
    delivered = {"notificationType": "Delivery", "mail": {"messageId": "0100-ok"}, "delivery": {}}
    assert post(client, sns.notification(delivered)).json["settled"] is True
    assert db.session.get(Delivery, delivery_id).status == "DELIVERED"


def test_forged_tampered_or_foreign_messages_are_403_and_change_nothing(app, client, sns):
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = sns.sign({**sns.notification(bounce("a@example.com"))}, key=forger)
    tampered = {**sns.notification(bounce("a@example.com")), "Message": json.dumps(bounce("b@example.com"))}
    other_topic = sns.notification(bounce("c@example.com"), TopicArn="arn:aws:sns:eu-west-1:999999999999:theirs")
    foreign_cert = sns.notification(bounce("d@example.com"), SigningCertURL="https://evil.example/cert.pem")
    unsigned = {k: v for k, v in sns.notification(bounce("e@example.com")).items() if k != "Signature"}
    wrong_version = {**sns.notification(bounce("f@example.com")), "SignatureVersion": "3"}
    for message in (forged, tampered, other_topic, foreign_cert, unsigned, wrong_version):
        response = post(client, message)
        assert response.status_code == 403, (message, response.json)
        assert response.json["error"]["code"] == "forbidden"
    assert post(client, {"no": "thing"}).status_code == 403
    assert client.post("/webhooks/email/ses", data="not json").status_code == 400
    assert suppressed() == {}
    assert sns.cert_fetches == 1, "the certificate is fetched once and kept"


def test_without_the_test_setting_only_sns_hosts_are_trusted(app, client, sns):
    app.config["SNS_TEST_CERT_PREFIX"] = None
    assert post(client, sns.notification(bounce("a@example.com"))).status_code == 403
    assert sns.cert_fetches == 0
    assert aws_url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
    assert aws_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem")
    for url in (
        "http://sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/x.pem",
        "https://user@sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
        "https://s3.amazonaws.com/x.pem",
        None,
    ):
        assert not aws_url(url), url


def test_subscription_is_confirmed_through_its_subscribe_url_only_on_an_allowed_host(app, client, sns):
    message = sns.subscription()
    response = post(client, message)
    assert response.status_code == 200 and response.json["confirmed"] is True
    assert sns.confirmed == [message["Token"]]
    elsewhere = sns.subscription(subscribe_url="http://169.254.169.254/latest/meta-data/")
    assert post(client, elsewhere).status_code == 403
    assert sns.confirmed == [message["Token"]]


def test_sendgrid_events_for_mail_sent_through_its_api_settle_by_the_custom_arg(app, client, monkeypatch):
    sendgrid_key = ec.generate_private_key(ec.SECP256R1())
    public = sendgrid_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", base64.b64encode(public).decode())
    delivery_id = dispatched_delivery("ana@example.com", "<herald-n1-email@herald.local>")
    answer = post_events(
        client,
        sendgrid_key,
        [event("bounce", "ana@example.com", type="bounce", herald_message_id="<herald-n1-email@herald.local>")],
    )
    assert answer.status_code == 200 and answer.json["settled"] == 1
    db.session.expire_all()
    assert db.session.get(Delivery, delivery_id).status == "FAILED"
