"""Email through SendGrid, SES and Postmark APIs in batches, each against a loopback peer that checks the request."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from app.campaigns import store
from app.channels import Message, Outcome, adapter_for, close_all
from app.channels.guard import breaker, take_token
from app.extensions import db
from app.models import Campaign, Delivery, Notification
from tests.factories import make_recipient, make_staff, make_template
from tests.integration.test_campaigns import campaign_fields, seed
from tests.peers.email_apis import PostmarkPeer, SendGridPeer, SesPeer

SENDGRID_KEY = "SG.test-key"
POSTMARK_TOKEN = "pm-server-token"
SES_KEY, SES_SECRET = "AKIDHERALDTEST", "herald/test/secret+key"


@pytest.fixture
def provider_config(app):
    saved = dict(app.config)
    close_all()
    yield app.config
    close_all()
    app.config.clear()
    app.config.update(saved)


@pytest.fixture
def sendgrid(provider_config):
    peer = SendGridPeer(SENDGRID_KEY).start()
    provider_config.update(
        EMAIL_PROVIDER="sendgrid", SENDGRID_API_KEY=SENDGRID_KEY, SENDGRID_API_URL=peer.url, EMAIL_DOMAIN_RATE=0.0
    )
    yield peer
    peer.stop()


@pytest.fixture
def postmark(provider_config):
    peer = PostmarkPeer(POSTMARK_TOKEN, inactive={"gone@example.com"}).start()
    provider_config.update(
        EMAIL_PROVIDER="postmark",
        POSTMARK_SERVER_TOKEN=POSTMARK_TOKEN,
        POSTMARK_API_URL=peer.url,
        EMAIL_DOMAIN_RATE=0.0,
    )
    yield peer
    peer.stop()


@pytest.fixture
def ses(provider_config):
    peer = SesPeer(SES_KEY, SES_SECRET, "eu-west-1", rejected={"gone@example.com"}).start()
    provider_config.update(
        EMAIL_PROVIDER="ses",
        SES_REGION="eu-west-1",
        SES_ACCESS_KEY_ID=SES_KEY,
        SES_SECRET_ACCESS_KEY=SES_SECRET,
        SES_ENDPOINT_URL=peer.url,
        EMAIL_DOMAIN_RATE=0.0,
    )
    yield peer
    peer.stop()


def message(n: int, address: str | None = None, marketing: bool = False) -> Message:
    return Message(
        delivery_id=n,
        recipient_id=n,
        notification_id=f"n{n}",
        channel="email",
        idempotency_key=f"herald-n{n}-email",
        recipient_external_id=f"u{n}",
        notification_type="marketing" if marketing else "transactional",
        category="promo",
        priority="normal",
        content={
            "subject": f"Hello {n}",
            "html": f"<h1>Winter sale</h1><p>Dear customer {n},</p><p>everything 20% off.</p>",
            "text": f"Winter sale. Dear customer {n}, everything 20% off.",
        },
        address=address or f"user{n}@example.com",
        headers={"List-Unsubscribe": f"<https://herald.test/unsubscribe/t{n}>"} if marketing else {},
    )


def send_batch(app, messages):
    with app.app_context():
        return adapter_for("email", app.config).send_batch(messages)


def test_sendgrid_sends_one_request_with_a_personalization_per_recipient_and_shared_content_once(app, sendgrid):
    messages = [message(n, marketing=True) for n in range(1, 301)]
    results = send_batch(app, messages)
    assert [r.outcome for r in results] == [Outcome.DISPATCHED] * 300
    assert [r.provider_message_id for r in results] == [f"<herald-n{n}-email@herald.local>" for n in range(1, 301)]
    assert [r["size"] for r in sendgrid.requests] == [300], "one request"
    mails = {m["to"]: m for m in sendgrid.mails}
    for n in (1, 150, 300):
        sent = mails[f"user{n}@example.com"]
        assert sent["subject"] == f"Hello {n}"
        assert sent["html"] == messages[n - 1].content["html"] and sent["text"] == messages[n - 1].content["text"]
        assert sent["headers"] == {"List-Unsubscribe": f"<https://herald.test/unsubscribe/t{n}>"}
        assert sent["id"] == f"<herald-n{n}-email@herald.local>"


def test_sendgrid_larger_than_1000_goes_in_requests_of_1000(app, sendgrid):
    results = send_batch(app, [message(n) for n in range(2500)])
    assert len(results) == 2500 and all(r.outcome is Outcome.DISPATCHED for r in results)
    assert [r["size"] for r in sendgrid.requests] == [1000, 1000, 500]


def test_sendgrid_a_bad_address_fails_alone_and_the_rest_is_posted_again(app, sendgrid):
    messages = [message(n) for n in range(5)]
    messages[2] = message(2, address="not-an-address")
    results = send_batch(app, messages)
    assert [r.outcome for r in results] == [Outcome.DISPATCHED] * 2 + [Outcome.PERMANENT] + [Outcome.DISPATCHED] * 2
    assert results[2].error_code == "sendgrid_400" and "personalizations.2.to.0.email" in results[2].detail
    assert sorted(m["to"] for m in sendgrid.mails) == [f"user{n}@example.com" for n in (0, 1, 3, 4)]


def test_sendgrid_throttling_is_a_wait_for_the_reset_and_nothing_is_sent(app, sendgrid):
    sendgrid.throttle = 1
    results = send_batch(app, [message(n) for n in range(3)])
    assert {r.outcome for r in results} == {Outcome.WAIT}
    assert results[0].error_code == "sendgrid_429" and 1.0 <= results[0].retry_after <= 3.0
    assert sendgrid.mails == []


def test_sendgrid_a_wrong_key_fails_permanently_and_counts_against_the_breaker(app, sendgrid):
    app.config.update(SENDGRID_API_KEY="SG.wrong", BREAKER_FAIL_MAX=2)
    first = send_batch(app, [message(1), message(2)])
    assert {r.outcome for r in first} == {Outcome.PERMANENT} and first[0].error_code == "sendgrid_401"
    assert "authorization grant is invalid" in first[0].detail
    send_batch(app, [message(3)])
    third = send_batch(app, [message(4)])
    assert third[0].outcome is Outcome.WAIT and third[0].error_code == "circuit_open", "two auth failures opened it"
    with app.app_context():
        assert breaker("sendgrid")[0].current_state == "open"


def test_sendgrid_a_personal_middle_over_10kb_splits_the_request_and_each_fits(app, sendgrid):
    messages = [message(n) for n in range(4)]
    messages[3] = Message(**{**messages[3].__dict__, "content": {"subject": "Big", "text": "x" * 12_000 + "3"}})
    results = send_batch(app, messages)
    assert all(r.outcome is Outcome.DISPATCHED for r in results)
    assert sorted(r["size"] for r in sendgrid.requests) == [1, 1, 2]
    assert {m["to"]: m["text"] for m in sendgrid.mails}["user3@example.com"] == "x" * 12_000 + "3"


def test_postmark_answers_per_message_and_an_inactive_address_is_gone(app, postmark):
    messages = [message(1, marketing=True), message(2, address="gone@example.com"), message(3)]
    results = send_batch(app, messages)
    assert [r.outcome for r in results] == [Outcome.DISPATCHED, Outcome.TOKEN_GONE, Outcome.DISPATCHED]
    assert results[1].error_code == "postmark_406"
    assert {m["to"]: m["id"] for m in postmark.mails} == {
        "user1@example.com": results[0].provider_message_id,
        "user3@example.com": results[2].provider_message_id,
    }
    streams = {m["to"]: m["stream"] for m in postmark.mails}
    assert streams == {"user1@example.com": "broadcast", "user3@example.com": "outbound"}
    assert postmark.mails[0]["headers"] == {"List-Unsubscribe": "<https://herald.test/unsubscribe/t1>"}


def test_postmark_batches_of_500_throttling_waits_and_a_bad_token_is_permanent(app, postmark):
    assert [r.outcome for r in send_batch(app, [message(n) for n in range(600)])] == [Outcome.DISPATCHED] * 600
    assert [r["size"] for r in postmark.requests] == [500, 100]
    postmark.throttle = 1
    waited = send_batch(app, [message(1)])
    assert waited[0].outcome is Outcome.WAIT and waited[0].retry_after >= 1.0
    app.config["POSTMARK_SERVER_TOKEN"] = "wrong"
    refused = send_batch(app, [message(1), message(2)])
    assert {r.outcome for r in refused} == {Outcome.PERMANENT} and refused[0].error_code == "postmark_10"
    assert refused[0].provider_fault


def test_ses_signed_bulk_send_in_calls_of_50_with_a_status_per_destination(app, ses):
    messages = [message(n, marketing=True) for n in range(120)]
    messages[7] = message(7, address="gone@example.com")
    results = send_batch(app, messages)
    assert [r["size"] for r in ses.requests] == [49, 50, 20]  # three calls; the rejected one is not a mail
    assert results[7].outcome is Outcome.PERMANENT and results[7].error_code == "ses_message_rejected"
    assert all(r.outcome is Outcome.DISPATCHED for i, r in enumerate(results) if i != 7)
    mails = {m["to"]: m for m in ses.mails}
    for n in (0, 60, 119):
        sent = mails[f"user{n}@example.com"]
        assert (sent["subject"], sent["html"], sent["text"]) == (
            f"Hello {n}",
            messages[n].content["html"],
            messages[n].content["text"],
        )
        assert sent["headers"] == {"List-Unsubscribe": f"<https://herald.test/unsubscribe/t{n}>"}
        assert sent["id"] == results[n].provider_message_id


def test_ses_sends_shared_text_with_braces_per_destination_so_ses_does_not_read_it_as_a_variable(app, ses):
    messages = [
        Message(**{**message(n).__dict__, "content": {"subject": "{{promo}} code", "text": f"Use {{{{x}}}} {n}"}})
        for n in range(2)
    ]
    send_batch(app, messages)
    assert sorted((m["subject"], m["text"]) for m in ses.mails) == [
        ("{{promo}} code", "Use {{x}} 0"),
        ("{{promo}} code", "Use {{x}} 1"),
    ]


def test_ses_throttling_waits_and_a_wrong_secret_is_a_signature_failure(app, ses):
    ses.throttle = 1
    waited = send_batch(app, [message(1), message(2)])
    assert {r.outcome for r in waited} == {Outcome.WAIT} and waited[0].error_code == "ses_TooManyRequestsException"
    app.config["SES_SECRET_ACCESS_KEY"] = "not-the-secret"
    refused = send_batch(app, [message(1)])
    assert refused[0].outcome is Outcome.PERMANENT and refused[0].provider_fault
    assert refused[0].error_code == "ses_InvalidSignatureException"
    app.config["SES_ACCESS_KEY_ID"] = "AKIDUNKNOWN"
    assert send_batch(app, [message(1)])[0].error_code == "ses_UnrecognizedClientException"
    assert ses.mails == []


def test_a_5xx_is_transient_and_a_provider_fault(app, postmark):
    postmark.fail_with = 503
    [result] = send_batch(app, [message(1)])
    assert result.outcome is Outcome.TRANSIENT and result.provider_fault


def test_the_sending_domain_rate_paces_batches_in_a_seconds_worth_shared_with_other_workers(app, sendgrid):
    app.config["EMAIL_DOMAIN_RATE"] = 10.0
    started = time.monotonic()
    results = send_batch(app, [message(n) for n in range(30)])
    elapsed = time.monotonic() - started
    assert all(r.outcome is Outcome.DISPATCHED for r in results)
    assert [r["size"] for r in sendgrid.requests] == [10, 10, 10]
    assert 1.8 <= elapsed < 4.0, "a full bucket of 10 at once, then 10 a second"
    with app.app_context():  # another worker spends the domain's tokens: this one waits for them
        time.sleep(1.0)
        assert take_token("email-domain:herald.local", 10.0, 10) == 0.0
        started = time.monotonic()
        assert send_batch(app, [message(n) for n in range(10)])[0].outcome is Outcome.DISPATCHED
        assert time.monotonic() - started >= 0.8


def test_an_api_send_goes_through_the_pipeline_and_is_recorded(app, api, run_jobs, sendgrid):
    make_recipient(external_id="ana", email="ana@example.com")
    response = api.post(
        "/v1/notifications",
        json={
            "user_id": "ana",
            "type": "transactional",
            "category": "orders",
            "channels": ["email"],
            "title": "Shipped",
            "body": "On its way",
        },
    )
    assert response.status_code == 202
    run_jobs()
    [sent] = sendgrid.mails
    delivery = db.session.scalar(select(Delivery).where(Delivery.notification_id == response.json["id"]))
    assert (sent["to"], delivery.status, delivery.provider) == ("ana@example.com", "DISPATCHED", "sendgrid")
    assert delivery.provider_message_id == sent["id"]


def test_campaign_over_sendgrid_batches_sends_each_recipient_once_in_few_requests(app, run_jobs, sendgrid):
    marketer = make_staff(email="mia@example.com", role="marketer")
    template = make_template(
        "winter",
        type="marketing",
        category="promo",
        variants={
            "en": {"email": {"subject": "Sale", "html": "<p>20% off, {{ recipient.id }}</p>", "text": "20% off"}}
        },
    )
    seed(1200)
    campaign = store.create_campaign(campaign_fields(template.id, channels=["email"]), marketer)
    cid = campaign.id
    assert store.launch(campaign, marketer) == []
    run_jobs()
    assert len(sendgrid.mails) == 1200 and len({m["to"] for m in sendgrid.mails}) == 1200
    assert len(sendgrid.requests) <= 4, [r["size"] for r in sendgrid.requests]
    assert all(m["headers"].get("List-Unsubscribe") for m in sendgrid.mails), "marketing carries one-click unsubscribe"
    dispatched = db.session.scalar(
        select(func.count())
        .select_from(Delivery)
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Notification.campaign_id == cid, Delivery.status == "DISPATCHED", Delivery.provider == "sendgrid")
    )
    assert dispatched == 1200
    assert db.session.get(Campaign, cid).status == "finished"


def test_campaign_throttled_by_sendgrid_waits_and_then_sends_everyone_once(app, run_jobs, sendgrid):
    marketer = make_staff(email="mia@example.com", role="marketer")
    template = make_template(
        "winter",
        type="marketing",
        category="promo",
        variants={"en": {"email": {"subject": "Sale", "html": "<p>Hi {{ recipient.id }}</p>", "text": "Hi"}}},
    )
    seed(50)
    sendgrid.throttle = 1
    campaign = store.create_campaign(campaign_fields(template.id, channels=["email"]), marketer)
    cid = campaign.id
    store.launch(campaign, marketer)
    run_jobs()
    assert sendgrid.mails == []
    waiting = db.session.scalars(
        select(Delivery.attempts).join(Notification).where(Notification.campaign_id == cid)
    ).all()
    assert len(waiting) == 50 and set(waiting) == {0}, "a wait spends no attempt"
    time.sleep(2.5)
    run_jobs(include_scheduled=True)
    assert (
        sorted(m["to"] for m in sendgrid.mails) == sorted({m["to"] for m in sendgrid.mails})
        and len(sendgrid.mails) == 50
    )


def test_postmark_inactive_recipient_through_the_pipeline_suppresses_the_address(app, api, run_jobs, postmark):
    from app.models import Suppression

    make_recipient(external_id="gone", email="gone@example.com")
    response = api.post(
        "/v1/notifications",
        json={
            "user_id": "gone",
            "type": "transactional",
            "category": "orders",
            "channels": ["email"],
            "title": "Shipped",
            "body": "On its way",
        },
    )
    run_jobs()
    delivery = db.session.scalar(select(Delivery).where(Delivery.notification_id == response.json["id"]))
    assert (delivery.status, delivery.error_code) == ("FAILED", "postmark_406")
    assert db.session.scalar(select(Suppression.address).where(Suppression.channel == "email")) == "gone@example.com"
    assert postmark.mails == []


def test_the_window_hands_a_batch_adapter_chunks_of_its_batch_size_and_a_raising_one_costs_them_a_retry(app):
    import time
    from types import SimpleNamespace

    from app.channels import Result
    from app.channels.base import Channel
    from app.models.types import utcnow
    from app.pipeline.sending import send_window

    class Batching(Channel):
        name = "fake"
        batch_size = 3
        calls: list[int] = []

        def send_batch(self, messages):
            self.calls.append(len(messages))
            if any(m.delivery_id == 99 for m in messages):
                raise RuntimeError("adapter bug")
            return [Result(Outcome.DISPATCHED, "fake", f"m-{m.delivery_id}") for m in messages]

    adapter, recorded = Batching(app.config), []
    pairs = [(SimpleNamespace(id=n), message(n)) for n in (1, 2, 3, 4, 99)]
    with app.app_context():
        sent = send_window(adapter, "fake", pairs, utcnow(), recorded.extend, time.monotonic() + 60)
    assert adapter.calls == [3, 2], "one provider call per batch_size messages"
    assert sent.wait is None and sent.rest == []
    assert [(item.id, r.provider_message_id) for item, r in recorded[:3]] == [(n, f"m-{n}") for n in (1, 2, 3)]
    assert {(item.id, r.outcome, r.error_code) for item, r in recorded[3:]} == {
        (4, Outcome.TRANSIENT, "adapter_error"),
        (99, Outcome.TRANSIENT, "adapter_error"),
    }


def test_with_smtp_the_email_channel_is_the_smtp_adapter_one_message_at_a_time(app, smtp_server):
    with app.app_context():
        adapter = adapter_for("email", app.config)
        assert app.config["EMAIL_PROVIDER"] == "smtp" and adapter.concurrent_sends == 1
        results = adapter.send_batch([message(1), message(2)])
    assert [r.outcome for r in results] == [Outcome.DISPATCHED] * 2 and results[0].provider == "smtp"
    assert len(smtp_server.messages) == 2


def test_sendgrid_a_throttled_first_request_of_a_split_batch_holds_back_the_rest(app, sendgrid):
    messages = [message(n) for n in range(4)]
    messages[3] = Message(**{**messages[3].__dict__, "content": {"subject": "Big", "text": "x" * 12_000 + "3"}})
    sendgrid.throttle = 1
    results = send_batch(app, messages)
    assert {r.outcome for r in results} == {Outcome.WAIT}
    assert sendgrid.requests == [] and sendgrid.throttle == 0, "one request tried (throttled), the others not"


def test_ses_a_destination_throttled_within_an_accepted_call_waits_alone(app, ses):
    ses.throttled_addresses = {"user1@example.com"}
    results = send_batch(app, [message(0), message(1), message(2)])
    assert [r.outcome for r in results] == [Outcome.DISPATCHED, Outcome.WAIT, Outcome.DISPATCHED]
    assert results[1].error_code == "ses_account_throttled" and results[1].retry_after >= 1.0
    assert sorted(m["to"] for m in ses.mails) == ["user0@example.com", "user2@example.com"]
