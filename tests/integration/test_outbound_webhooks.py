"""Outbound webhooks: signed per Standard Webhooks (checked with its reference library), retried, ordered per user,
auto-disabled with an email to admins, replayed from the console, refused for private hosts, and emitted through
a transactional outbox (a rolled-back fact emits nothing)."""

from __future__ import annotations

import itertools
import time

import pytest
from rq import Queue
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.config import WEBHOOK_QUEUE
from app.extensions import db
from app.inbox.store import mark_all_read, record_click
from app.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from app.outbound_webhooks.dispatch import dispatch
from app.outbound_webhooks.events import Fact
from app.outbound_webhooks.outbox import emit
from app.redis_client import get_redis
from tests.factories import make_notification, make_recipient, make_staff
from tests.integration.test_sms import twilio, twilio_post  # noqa: F401  (twilio: a fixture)
from tests.peers.webhook import WebhookPeer

ADMIN, PASSWORD = "admin@example.com", "correct horse battery"


@pytest.fixture
def webhook_config(app):
    """Loopback allowed and a fast retry schedule, as HERALD_WEBHOOK_* would set them; restored afterwards."""
    names = (
        "WEBHOOK_ALLOWED_HOSTS",
        "WEBHOOK_RETRY_SCHEDULE",
        "WEBHOOK_DISABLE_AFTER_HOURS",
        "WEBHOOK_DISABLE_MIN_FAILURES",
    )
    saved = {name: app.config[name] for name in names}
    app.config.update(WEBHOOK_ALLOWED_HOSTS=frozenset({"127.0.0.1"}), WEBHOOK_RETRY_SCHEDULE=(0.2, 0.2, 0.2))
    yield app.config
    app.config.update(saved)


@pytest.fixture
def peer():
    server = WebhookPeer().start()
    yield server
    server.release.set()
    server.stop()


def register(api, url: str, event_types=("notification.accepted",)) -> dict:
    response = api.post("/v1/webhook-endpoints", json={"url": url, "event_types": list(event_types)})
    assert response.status_code == 201, response.json
    return response.json


def send(api, user_id: str, title: str = "Hi") -> str:
    response = api.post(
        "/v1/notifications",
        json={
            "user_id": user_id,
            "type": "transactional",
            "category": "general",
            "channels": ["in_app"],
            "title": title,
            "body": "b",
        },
    )
    assert response.status_code == 202, response.json
    return response.json["id"]


def drain(until, timeout: float = 10.0) -> None:
    """Run dispatcher passes (as the webhooks worker would) until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the dispatcher did not get there in time"
        dispatch(budget_seconds=2)
        db.session.remove()
        time.sleep(0.05)


def test_a_message_verifies_with_the_standardwebhooks_library_and_carries_the_event(api, webhook_config, peer):
    make_recipient(external_id="ana")
    secret = register(api, f"{peer.url}/hook")["secret"]
    assert secret.startswith("whsec_")
    notification_id = send(api, "ana")
    drain(lambda: len(peer.received()) == 1)
    request = peer.received()[0]
    payload = Webhook(secret).verify(request["body"], request["headers"])
    assert payload["type"] == "notification.accepted"
    assert payload["data"]["notification_id"] == notification_id and payload["data"]["user_id"] == "ana"
    assert request["headers"]["webhook-id"].startswith("msg_")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(request["body"].replace(b"ana", b"bob"), request["headers"])
    attempt = db.session.scalar(select(WebhookAttempt))
    assert attempt.succeeded and attempt.status_code == 200 and attempt.duration_ms >= 0
    assert '"ok": true' in attempt.response_excerpt


def test_after_a_rotation_both_secrets_verify_until_the_overlap_ends(api, webhook_config, peer):
    make_recipient(external_id="ana")
    created = register(api, f"{peer.url}/hook")
    rotated = api.post(f"/v1/webhook-endpoints/{created['id']}/rotate-secret")
    assert rotated.status_code == 200 and rotated.json["secret"] != created["secret"]
    send(api, "ana")
    drain(lambda: len(peer.received()) == 1)
    request = peer.received()[0]
    for secret in (created["secret"], rotated.json["secret"]):
        Webhook(secret).verify(request["body"], request["headers"])


def test_a_failing_peer_is_retried_on_the_schedule_and_every_attempt_is_logged(api, webhook_config, peer):
    make_recipient(external_id="ana")
    peer.statuses = [500, 503]
    register(api, f"{peer.url}/hook")
    send(api, "ana")
    drain(lambda: db.session.scalar(select(WebhookMessage.status)) == "delivered")
    received = peer.received()
    assert len(received) == 3 and len({r["headers"]["webhook-id"] for r in received}) == 1
    gaps = [later["received"] - earlier["received"] for earlier, later in itertools.pairwise(received)]
    assert all(gap >= 0.2 for gap in gaps), gaps
    attempts = db.session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)).all()
    assert [a.status_code for a in attempts] == [500, 503, 200]
    assert [a.succeeded for a in attempts] == [False, False, True]


def test_a_message_is_given_up_once_the_schedule_is_spent(api, webhook_config, peer):
    make_recipient(external_id="ana")
    peer.statuses = [500] * 10
    register(api, f"{peer.url}/hook")
    send(api, "ana")
    drain(lambda: db.session.scalar(select(WebhookMessage.status)) == "failed")
    message = db.session.scalar(select(WebhookMessage))
    assert message.attempts == 4 and len(peer.received()) == 4  # the first try and the schedule's three retries
    assert message.last_error.startswith("gave up after 4 attempts: HTTP 500")


def test_messages_about_one_user_wait_for_the_earlier_one_while_other_users_go_ahead(api, webhook_config, peer):
    for user in ("ana", "bob"):
        make_recipient(external_id=user)
    register(api, f"{peer.url}/hook")
    first, second = send(api, "ana", "one"), send(api, "ana", "two")
    other = send(api, "bob")
    failed = []

    def fail_first_once(body: bytes):  # ana's first message fails once
        if first.encode() in body and not failed:
            failed.append(body)
            return 500
        return None

    peer.decide = fail_first_once
    dispatch(budget_seconds=2)
    seen = [event["data"]["notification_id"] for event in peer.events()]
    assert sorted(seen) == sorted([first, other]), "ana's second message must wait for her first; bob's need not"
    drain(lambda: len(peer.received()) == 4)
    anas = [e["data"]["notification_id"] for e in peer.events() if e["data"]["user_id"] == "ana"]
    assert anas == [first, first, second]


def test_an_endpoint_failing_for_too_long_is_disabled_and_admins_get_an_email(api, webhook_config, peer, smtp_server):
    make_staff(email=ADMIN, password=PASSWORD)
    make_staff(email="marketer@example.com", password=PASSWORD, role="marketer")
    webhook_config.update(
        WEBHOOK_DISABLE_AFTER_HOURS=0.0, WEBHOOK_DISABLE_MIN_FAILURES=3, WEBHOOK_RETRY_SCHEDULE=(0.1,) * 10
    )
    make_recipient(external_id="ana")
    peer.statuses = [500] * 20
    endpoint_id = register(api, f"{peer.url}/hook")["id"]
    send(api, "ana")
    drain(lambda: not db.session.get(WebhookEndpoint, endpoint_id).enabled)
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    assert endpoint.consecutive_failures == 3 and "3 in a row" in endpoint.disabled_reason
    assert len(peer.received()) == 3
    deadline = time.monotonic() + 5
    while not smtp_server.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    [mail] = smtp_server.messages
    assert mail["To"] == ADMIN and "disabled the webhook endpoint" in mail["Subject"]
    assert f"/console/webhooks/{endpoint_id}" in mail.get_content()
    assert db.session.scalar(select(WebhookMessage.status)) == "pending"  # kept for when it is enabled again
    dispatch(budget_seconds=1)
    assert len(peer.received()) == 3, "a disabled endpoint gets nothing"

    peer.statuses = []
    assert api.patch(f"/v1/webhook-endpoints/{endpoint_id}", json={"enabled": True}).json["enabled"] is True
    drain(lambda: db.session.scalar(select(WebhookMessage.status)) == "delivered")
    assert db.session.get(WebhookEndpoint, endpoint_id).consecutive_failures == 0


def test_an_admin_replays_a_message_from_the_console_with_the_same_webhook_id(api, client, webhook_config, peer):
    make_staff(email=ADMIN, password=PASSWORD)
    make_recipient(external_id="ana")
    endpoint_id = register(api, f"{peer.url}/hook")["id"]
    send(api, "ana")
    drain(lambda: len(peer.received()) == 1)
    message_id, msg_id = db.session.execute(select(WebhookMessage.id, WebhookMessage.msg_id)).one()
    assert client.post("/console/login", data={"email": ADMIN, "password": PASSWORD}).status_code == 302
    page = client.get(f"/console/webhooks/{endpoint_id}").get_data(as_text=True)
    assert msg_id in page and "200 · " in page and "Replay" in page
    queue = Queue(WEBHOOK_QUEUE, connection=get_redis())
    queue.empty()
    answer = client.post(f"/console/webhooks/{endpoint_id}/messages/{message_id}/replay")
    assert answer.status_code == 303
    assert queue.count == 1, "the replay nudges the dispatcher"
    drain(lambda: len(peer.received()) == 2)
    assert peer.ids() == [msg_id, msg_id]
    assert db.session.scalar(select(func.count()).select_from(WebhookAttempt)) == 2


def test_private_and_plain_http_endpoints_are_refused_unless_their_host_is_allowed(api, app):
    for url in (
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.5/hook",
        "https://localhost/x",
        "https://intranet.internal/x",
        "https://printer/x",
        "ftp://example.com/x",
    ):
        response = api.post("/v1/webhook-endpoints", json={"url": url, "event_types": ["delivery.sent"]})
        assert response.status_code == 400 and response.json["error"]["fields"][0]["field"] == "url", (
            url,
            response.json,
        )
    assert db.session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0
    assert register(api, "https://hooks.example.com/herald", ["delivery.sent"])["enabled"] is True


def test_an_endpoint_that_turned_private_is_refused_at_send_time(app, webhook_config, peer):
    endpoint = WebhookEndpoint(
        url=f"{peer.url}/hook",
        description="",
        event_types=["notification.read"],
        secret="whsec_" + "A" * 32,
        enabled=True,
        consecutive_failures=0,
    )
    db.session.add(endpoint)
    db.session.commit()
    emit([Fact("notification.read", {"user_id": "ana", "notification_id": "n1"})])
    db.session.commit()
    webhook_config["WEBHOOK_ALLOWED_HOSTS"] = frozenset()
    dispatch(budget_seconds=1)
    attempt = db.session.scalar(select(WebhookAttempt))
    assert attempt.error.startswith("refused: endpoint must be an https URL") and peer.received() == []


def test_a_rolled_back_fact_emits_nothing_and_a_committed_one_nudges_the_dispatcher_once(api, webhook_config, peer):
    register(api, f"{peer.url}/hook", ["notification.read"])
    queue = Queue(WEBHOOK_QUEUE, connection=get_redis())
    emit([Fact("notification.read", {"user_id": "ana", "notification_id": "n1"})])
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(WebhookMessage)) == 0 and queue.count == 0
    emit([Fact("notification.read", {"user_id": "ana", "notification_id": "n2"})])
    db.session.commit()
    emit([Fact("notification.read", {"user_id": "ana", "notification_id": "n3"})])
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(WebhookMessage)) == 2
    assert queue.count == 1, "one pending nudge covers every commit until the dispatcher starts"


def test_read_click_and_unsubscribe_emit_their_events_set_based(api, client, webhook_config, peer):
    recipient = make_recipient(external_id="ana", email="ana@example.com")
    register(api, f"{peer.url}/hook", ["notification.read", "notification.clicked", "recipient.unsubscribed"])
    notes = [make_notification(recipient, inbox_at=db.func.now()) for _ in range(3)]
    assert mark_all_read(recipient.id) == 3
    assert record_click(notes[0].id, "email") and not record_click(notes[0].id, "email")
    from app.delivery.unsubscribe import unsubscribe_token

    token = unsubscribe_token(client.application.config["SECRET_KEY"], "ana", "news")
    assert client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    types = [m.event_type for m in db.session.scalars(select(WebhookMessage).order_by(WebhookMessage.id))]
    assert types == ["notification.read"] * 3 + ["notification.clicked", "recipient.unsubscribed"]
    drain(lambda: len(peer.received()) == 5)
    assert {e["data"]["user_id"] for e in peer.events()} == {"ana"}


def test_the_console_pages_are_for_admins_and_changes_are_audited_without_the_secret(client, app):
    from app.models import AuditEntry

    make_staff(email=ADMIN, password=PASSWORD)
    make_staff(email="marketer@example.com", password=PASSWORD, role="marketer")
    assert (
        client.post("/console/login", data={"email": "marketer@example.com", "password": PASSWORD}).status_code == 302
    )
    assert client.get("/console/webhooks").status_code == 403
    assert client.get("/console/webhooks/request-log").status_code == 403
    assert ">Webhooks<" not in client.get("/console/").get_data(as_text=True)
    client.post("/console/logout")

    assert client.post("/console/login", data={"email": ADMIN, "password": PASSWORD}).status_code == 302
    assert ">Webhooks<" in client.get("/console/").get_data(as_text=True)
    refused = client.post("/console/webhooks", data={"url": "https://localhost/x", "event_types": ["delivery.sent"]})
    assert refused.status_code == 400 and "endpoint must be on a public host" in refused.get_data(as_text=True)
    created = client.post(
        "/console/webhooks", data={"url": "https://hooks.example.com/h", "event_types": ["delivery.sent"]}
    )
    assert created.status_code == 303
    endpoint = db.session.scalar(select(WebhookEndpoint))
    shown = client.get(created.headers["Location"]).get_data(as_text=True)
    assert endpoint.secret in shown
    assert endpoint.secret not in client.get(created.headers["Location"]).get_data(as_text=True), "shown once"
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "webhook_endpoint.create"))
    assert entry.actor == ADMIN and entry.after["event_types"] == ["delivery.sent"] and "secret" not in entry.after
    assert client.post(f"/console/webhooks/{endpoint.id}/disable").status_code == 303
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, endpoint.id).enabled is False


def test_an_unsigned_post_to_the_request_log_is_refused_and_kept_nowhere(client):
    response = client.post("/console/webhooks/request-log", json={"type": "forged"})
    assert response.status_code == 401
    assert get_redis().keys("*webhook-request-log*") == []


@pytest.mark.usefixtures("twilio")
def test_every_way_to_opt_out_emits_recipient_unsubscribed_once(api, app, client, webhook_config, peer):
    """Preferences (API and inbox share one path), the hard stop and an inbound SMS STOP; turning on emits nothing,
    nor does switching off what was off by default (marketing SMS needs an opt-in)."""
    make_recipient(external_id="ana", phone="+351912345678")
    register(api, f"{peer.url}/hook", ["recipient.unsubscribed"])
    switches = [
        {"channel": "email", "category": "news", "enabled": False},
        {"channel": "sms", "category": "orders", "enabled": True},
        {"channel": "sms", "category": "marketing", "enabled": False},
    ]
    assert api.put("/v1/users/ana/preferences", json={"preferences": switches}).status_code == 200
    assert api.put("/v1/users/ana/preferences", json={"preferences": switches}).status_code == 200  # no change
    assert api.put("/v1/users/ana/preferences", json={"hard_stop": True}).status_code == 200
    assert (
        twilio_post(app, client, "/webhooks/sms/inbound", {"From": "+351912345678", "Body": "STOP"}).status_code == 200
    )
    drain(lambda: len(peer.received()) == 3)
    data = [event["data"] for event in peer.events()]
    assert data == [
        {"user_id": "ana", "channel": "email", "category": "news", "source": "preferences"},
        {"user_id": "ana", "channel": None, "category": None, "source": "preferences"},
        {"user_id": "ana", "channel": "sms", "category": None, "source": "sms_stop"},
    ]
