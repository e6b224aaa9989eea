"""Circuit breakers, failover, rate limits, provider health and fault isolation between channels."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pytest
from prometheus_client import REGISTRY
from rq import Worker
from sqlalchemy import select

from app.channels import close_all
from app.channels.guard import take_token
from app.channels.health import metrics_text, provider_health
from app.extensions import db
from app.models import Delivery, DeliveryEvent
from app.redis_client import get_redis
from tests.conftest import free_port, kill_worker, start_worker
from tests.factories import make_recipient
from tests.peers.twilio import TwilioApi

SID, TOKEN = "AC" + "3" * 32, "token-3"


@pytest.fixture
def twilio(app):
    api = TwilioApi({SID: TOKEN}).start()
    saved = dict(app.config)
    app.config.update(
        TWILIO_ACCOUNT_SID=SID,
        TWILIO_AUTH_TOKEN=TOKEN,
        TWILIO_FROM="+15005550006",
        TWILIO_API_BASE=api.url,
        SMS_RATE=0.0,
        BREAKER_FAIL_MAX=3,
        BREAKER_RESET_SECONDS=30.0,
    )
    close_all()
    yield api
    close_all()
    app.config.clear()
    app.config.update(saved)
    api.stop()


def sms(api, user_id="ana", body="Parcel on its way", channels=("sms",)) -> str:
    response = api.post(
        "/v1/notifications",
        json={
            "user_id": user_id,
            "type": "transactional",
            "category": "orders",
            "channels": list(channels),
            "title": "Order",
            "body": body,
        },
    )
    assert response.status_code == 202, response.json
    return response.json["id"]


def delivery_of(notification_id: str, channel: str = "sms") -> Delivery:
    db.session.expire_all()
    return db.session.scalar(
        select(Delivery).where(Delivery.notification_id == notification_id, Delivery.channel == channel)
    )


def opens(provider: str) -> float:
    return REGISTRY.get_sample_value("herald_circuit_open_total", {"provider": provider}) or 0.0


def test_circuit_opens_after_n_failures_and_later_sends_wait_without_spending_attempts(api, run_jobs, twilio, caplog):
    make_recipient(external_id="ana", phone="+351912345678")
    twilio.fail_account[SID] = (503, {"code": 20503, "message": "Service unavailable", "status": 503})
    before = opens("twilio")
    # Alembic's fileConfig (run by the app fixture's migrations) disables loggers that already exist.
    logging.getLogger("app.channels.guard").disabled = False
    with caplog.at_level(logging.WARNING, logger="app.channels.guard"):
        failed = [sms(api, body=f"try {n}") for n in range(3)]
        run_jobs()
    assert [(delivery_of(n).status, delivery_of(n).attempts) for n in failed] == [("PENDING", 1)] * 3
    assert opens("twilio") == before + 1
    assert "circuit for provider twilio opened" in caplog.text
    assert {row["name"]: row["circuit"] for row in provider_health()}["twilio"] == "open"

    calls_before = len(twilio.messages) + 3
    waiting = sms(api, body="while open")
    run_jobs()
    delivery = delivery_of(waiting)
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("PENDING", 0, None), (
        "waiting is not an attempt"
    )
    assert delivery.not_before is not None and delivery.not_before > delivery.updated_at
    assert len(twilio.messages) + 3 == calls_before, "no request reached the provider"
    events = db.session.scalars(select(DeliveryEvent.detail).where(DeliveryEvent.delivery_id == delivery.id)).all()
    assert "circuit open for twilio" in events[-1]


def test_half_open_probe_closes_the_circuit_and_the_waiting_send_goes_out(app, api, run_jobs, twilio):
    make_recipient(external_id="ana", phone="+351912345678")
    app.config["BREAKER_RESET_SECONDS"] = 1.0
    twilio.fail_account[SID] = (500, {"code": 20500, "message": "Internal Server Error", "status": 500})
    for n in range(3):
        sms(api, body=f"try {n}")
    run_jobs()
    waiting = sms(api, body="after recovery")
    run_jobs()
    assert delivery_of(waiting).attempts == 0
    del twilio.fail_account[SID]
    time.sleep(2.1)  # opened_at has one-second resolution
    deadline = time.monotonic() + 5  # the wait carries up to a second of jitter
    while delivery_of(waiting).status != "DISPATCHED" and time.monotonic() < deadline:
        run_jobs(include_scheduled=True)
        time.sleep(0.2)
    assert delivery_of(waiting).status == "DISPATCHED"
    assert {row["name"]: row["circuit"] for row in provider_health()}["twilio"] == "closed"


def test_email_fails_over_to_the_fallback_relay_when_the_first_is_down(app, api, run_jobs, smtp_server):
    make_recipient(external_id="ana", email="ana@example.com")
    saved = app.config["SMTP_URL"], app.config["SMTP_FALLBACK_URL"]
    app.config["SMTP_URL"], app.config["SMTP_FALLBACK_URL"] = f"smtp://127.0.0.1:{free_port()}", smtp_server.url
    try:
        notification_id = sms(api, channels=("email",))
        run_jobs()
    finally:
        app.config["SMTP_URL"], app.config["SMTP_FALLBACK_URL"] = saved
    delivery = delivery_of(notification_id, "email")
    assert (delivery.status, delivery.provider, delivery.attempts) == ("DISPATCHED", "smtp-fallback", 1)
    assert len(smtp_server.messages) == 1
    health = {row["name"]: row for row in provider_health()}
    assert health["smtp"]["failed_15m"] == 1 and health["smtp-fallback"]["sent_15m"] == 1


def test_token_bucket_keeps_sms_under_the_configured_rate(app, api, run_jobs, twilio):
    app.config["SMS_RATE"] = 5.0
    make_recipient(external_id="ana", phone="+351912345678")
    for n in range(12):
        sms(api, body=f"message {n}")
    run_jobs()
    times = sorted(m["at"] for m in twilio.messages)
    assert len(times) == 12
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 10, f"{busiest} SMS within one second: at most the burst of 5 plus 5 refilled"
    assert times[-1] - times[0] >= 1.3, "12 sends at 5/s after a burst of 5 take at least 7 / 5 s"


def test_token_bucket_is_shared_by_concurrent_workers(app):
    granted = []

    def worker():
        with app.app_context():
            granted.extend(1 for _ in range(20) if take_token("shared-test", 10.0) == 0.0)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 10 <= len(granted) <= 12, "80 asks in well under a second: the burst of 10 and no more"


def test_provider_health_and_metrics_show_sends_failures_and_state(api, run_jobs, twilio):
    make_recipient(external_id="ana", phone="+351912345678")
    sms(api)
    twilio.fail_next.append((500, {}, {"code": 20500, "message": "Internal Server Error", "status": 500}))
    sms(api)
    run_jobs()
    [row] = [r for r in provider_health() if r["name"] == "twilio"]
    assert (row["circuit"], row["sent_15m"], row["failed_15m"], row["error_rate"]) == ("closed", 2, 1, 0.5)
    text = metrics_text().decode()
    assert 'herald_provider_sends_15m{provider="twilio"} 2.0' in text
    assert 'herald_provider_failures_15m{provider="twilio"} 1.0' in text
    assert 'herald_provider_circuit_state{provider="twilio",state="closed"} 1.0' in text


class BlackHoleSmtp:
    """Accepts TCP connections and never says a word: the SMTP client waits for a banner that never comes."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.slow
def test_a_hanging_email_server_does_not_delay_sms(app, api, test_env, twilio):
    """Six notifications on email + SMS, two workers, an SMTP server that hangs for 30 s per connection.

    Before the fix each routing job sent its channels inline, so both workers
    sat in SMTP and the third SMS waited ~30 s. Now email and SMS are separate
    jobs and email may hold only one worker: every SMS is out within seconds.
    """
    black_hole = BlackHoleSmtp()
    for n in range(6):
        make_recipient(external_id=f"r{n}", email=f"r{n}@example.com", phone=f"+35191234567{n}")
    env = {
        **os.environ,
        **test_env,
        "SMTP_URL": f"smtp://127.0.0.1:{black_hole.port}",
        "HERALD_SMTP_TIMEOUT": "30",
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM": "+15005550006",
        "TWILIO_API_BASE": twilio.url,
        "HERALD_SMS_RATE": "0",
        "HERALD_RQ_WORKERS": "2",
    }
    workers = [start_worker([], env) for _ in range(2)]
    try:
        ready_by = time.monotonic() + 60
        while len(Worker.all(connection=get_redis())) < 2 and time.monotonic() < ready_by:
            time.sleep(0.1)
        started = time.monotonic()
        ids = [sms(api, user_id=f"r{n}", channels=("email", "sms")) for n in range(6)]
        deadline = started + 10
        while len(twilio.messages) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        assert len(twilio.messages) == 6, f"only {len(twilio.messages)} of 6 SMS in {elapsed:.1f}s while SMTP hangs"
        assert elapsed < 8
        db.session.remove()
        emails = [delivery_of(nid, "email") for nid in ids]
        assert all(e.status in ("PENDING", "SENDING") for e in emails), "email is still waiting, not lost"
    finally:
        for worker in workers:
            kill_worker(worker)  # one is inside a 30 s SMTP wait; a warm shutdown would wait for it
        black_hole.close()


@pytest.mark.parametrize("circuit_trusted_closed", [False, True])
def test_an_answered_send_stands_when_redis_dies_before_its_bookkeeping(
    app, tmp_path, monkeypatch, caplog, circuit_trusted_closed
):
    """The provider took the message; Redis then dies before the breaker and health counters are written.

    Turning that into an error would retry a message already sent (seen as a duplicate email when Redis was
    killed mid-load): the provider's answer is returned and the lost bookkeeping is only logged.
    """
    from app.channels import Outcome, Result, guard
    from app.redis_client import connect
    from tests.outage_servers import PrivateRedis

    private = PrivateRedis(tmp_path / "redis").start()
    try:
        monkeypatch.setitem(app.extensions, "herald_redis", connect(private.url))
        provider = f"bookkeeping-{circuit_trusted_closed}"
        if circuit_trusted_closed:
            assert guard.guarded(provider, lambda: Result(Outcome.DELIVERED, provider)).outcome is Outcome.DELIVERED
        sent = []

        def send_then_redis_dies() -> Result:
            sent.append(1)
            private.stop()
            return Result(Outcome.DELIVERED, provider, provider_message_id="m-1")

        with caplog.at_level(logging.WARNING, logger="app.channels.guard"):
            result = guard.guarded(provider, send_then_redis_dies)
        assert sent == [1]
        assert (result.outcome, result.provider_message_id) == (Outcome.DELIVERED, "m-1")
        assert "the answer stands" in caplog.text
    finally:
        private.stop()


def test_a_rate_limit_mid_window_gives_back_what_was_not_sent_without_spending_attempts(app, twilio):
    """A window of 40 SMS claimed at once, a bucket of 2/s: what the provider got is DISPATCHED; everything
    else -- answered "wait" by the bucket, or claimed and never handed out -- is PENDING for later with its
    attempt given back."""
    from app.accept import accept_notification
    from app.models.bulk import insert_ignoring_conflicts
    from app.models.types import utcnow
    from app.pipeline.deliver import deliver
    from app.schemas import NotificationCreate

    app.config["SMS_RATE"] = 2.0
    rows = []
    for n in range(40):
        make_recipient(external_id=f"w{n}", phone=f"+35191234{n:04d}")
        payload = NotificationCreate(user_id=f"w{n}", type="transactional", title="Hi", body="Hi", channels=["sms"])
        notification = accept_notification(payload, api_key_id=None, idempotency_key=None)
        rows.append({"notification_id": notification.id, "channel": "sms", "status": "PENDING", "attempts": 0})
        rows[-1].update(created_at=utcnow(), updated_at=utcnow())
    insert_ignoring_conflicts(Delivery, rows, ["notification_id", "channel"])
    db.session.commit()
    get_redis().flushdb()  # the routing jobs: this test hands the window to the pipeline itself
    ids = list(db.session.scalars(select(Delivery.id)))

    report = deliver(ids)
    db.session.expire_all()
    deliveries = db.session.scalars(select(Delivery)).all()
    sent = [d for d in deliveries if d.status == "DISPATCHED"]
    waiting = [d for d in deliveries if d.status == "PENDING"]
    assert len(sent) == len(twilio.messages) and 2 <= len(sent) < 40, len(sent)
    assert len(sent) + len(waiting) == 40
    assert {d.attempts for d in waiting} == {0}, "a send that waits spends no attempt"
    assert all(d.not_before is not None and d.not_before > d.updated_at for d in waiting)
    assert sorted(i for ids in report.later.values() for i in ids) == sorted(d.id for d in waiting)
