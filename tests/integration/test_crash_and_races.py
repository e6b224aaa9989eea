"""Claim -> send -> record under races and SIGKILL, with real workers, Redis, SMTP and database."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from rq import Queue
from rq.registry import StartedJobRegistry
from sqlalchemy import func, select

from app.accept import accept_notification
from app.extensions import db
from app.models import Delivery, DeliveryEvent, Notification
from app.models.types import utcnow
from app.redis_client import get_redis
from app.schemas import NotificationCreate
from jobs.delivery import dispatch_delivery, route_notification
from jobs.maintenance import redrive_stuck_work
from tests.conftest import PROJECT_ROOT, kill_worker, start_worker
from tests.factories import make_recipient


def email_notification(user_id: str, body: str = "Your receipt") -> str:
    payload = NotificationCreate(user_id=user_id, type="transactional", title="Receipt", body=body, channels=["email"])
    return accept_notification(payload, api_key_id=None, idempotency_key=None).id


def routed_email_delivery(app) -> int:
    """A PENDING email delivery whose routing is done but which nobody has claimed yet."""
    make_recipient(external_id="ana", email="ana@example.com")
    notification_id = email_notification("ana")
    # Route without dispatching: insert the delivery the way route_notification does.
    from app.models.bulk import insert_ignoring_conflicts

    insert_ignoring_conflicts(
        Delivery,
        [
            {
                "notification_id": notification_id,
                "channel": "email",
                "status": "PENDING",
                "attempts": 0,
                "created_at": utcnow(),
                "updated_at": utcnow(),
            }
        ],
        ["notification_id", "channel"],
    )
    db.session.commit()
    get_redis().flushdb()  # drop the queued routing job: this test drives dispatch itself
    return db.session.scalar(select(Delivery.id))


def test_twenty_concurrent_dispatchers_send_once(app, smtp_server):
    delivery_id = routed_email_delivery(app)
    barrier = threading.Barrier(20)
    outcomes = []

    def race():
        with app.app_context():
            barrier.wait()
            outcomes.append(dispatch_delivery(delivery_id))
            db.session.remove()

    threads = [threading.Thread(target=race) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["DISPATCHED"] + ["not-claimed"] * 19
    assert len(smtp_server.messages) == 1
    delivery = db.session.get(Delivery, delivery_id)
    assert delivery.attempts == 1 and delivery.status == "DISPATCHED"


def test_live_claim_is_not_stolen_but_an_expired_one_is_redriven_with_the_same_key(app, smtp_server):
    delivery_id = routed_email_delivery(app)
    from app.pipeline.claims import claim

    assert claim([delivery_id], utcnow(), 60) == {delivery_id: 1}  # a worker claimed it, then died before sending
    db.session.commit()
    assert dispatch_delivery(delivery_id) == "not-claimed"  # lease still running: hands off
    assert smtp_server.messages == []
    app.config["DISPATCH_LEASE_SECONDS"], saved = 0, app.config["DISPATCH_LEASE_SECONDS"]
    try:
        time.sleep(0.01)
        assert dispatch_delivery(delivery_id) == "DISPATCHED"
    finally:
        app.config["DISPATCH_LEASE_SECONDS"] = saved
    [message] = smtp_server.messages
    assert message["Message-ID"].startswith(f"<{db.session.get(Delivery, delivery_id).provider_idempotency_key}@")
    assert db.session.get(Delivery, delivery_id).attempts == 2


def routed_email_deliveries(app, count: int, kind: str) -> list[int]:
    """``count`` PENDING email deliveries of type ``kind``, routed, that nobody has claimed yet."""
    from app.models.bulk import insert_ignoring_conflicts

    rows = []
    for n in range(count):
        make_recipient(external_id=f"d{n}", email=f"d{n}@example.com")
        notification_id = email_notification(f"d{n}")
        db.session.get(Notification, notification_id).type = kind
        now = utcnow()
        rows.append({"notification_id": notification_id, "channel": "email", "status": "PENDING", "attempts": 0})
        rows[-1].update(created_at=now, updated_at=now)
    insert_ignoring_conflicts(Delivery, rows, ["notification_id", "channel"])
    db.session.commit()
    get_redis().flushdb()  # drop the queued routing jobs: this test drives dispatch itself
    return list(db.session.scalars(select(Delivery.id).order_by(Delivery.id)))


def test_a_dead_senders_marketing_claims_become_uncertain_only_if_they_may_have_left(app, smtp_server):
    """A window claimed in one statement and cut short by a crash: only what was handed to the client (or what
    no hand-off note speaks for) is UNCERTAIN; a claim never handed out is sent, once."""
    from app.pipeline import claims, sending
    from app.pipeline.deliver import deliver

    handed, never_handed, unnoted = routed_email_deliveries(app, 3, "marketing")
    claimed_at = utcnow()
    assert set(claims.claim([handed, never_handed, unnoted], claimed_at, 60)) == {handed, never_handed, unnoted}
    sending.reserve([handed, never_handed], claimed_at)  # the sender died before noting ``unnoted``
    db.session.commit()
    assert sending._handed([(db.session.get(Delivery, handed), None)], claimed_at)
    assert sending.never_handed([(d, claimed_at) for d in (handed, never_handed, unnoted)]) == {never_handed}
    assert sending.never_handed([(never_handed, utcnow())]) == set(), "a note of another claim says nothing"

    app.config["DISPATCH_LEASE_SECONDS"], saved = 0, app.config["DISPATCH_LEASE_SECONDS"]
    try:
        time.sleep(0.01)
        deliver([handed, never_handed, unnoted])
    finally:
        app.config["DISPATCH_LEASE_SECONDS"] = saved
    db.session.remove()
    statuses = dict(db.session.execute(select(Delivery.id, Delivery.status)).all())
    assert statuses == {handed: "UNCERTAIN", never_handed: "DISPATCHED", unnoted: "UNCERTAIN"}
    assert len(smtp_server.messages) == 1


def test_a_live_sender_renews_only_its_own_claims(app):
    from app.pipeline import claims

    [delivery_id] = routed_email_deliveries(app, 1, "transactional")
    claimed_at = utcnow()
    claims.claim([delivery_id], claimed_at, 60)
    db.session.commit()
    assert claims.renew([delivery_id], utcnow(), utcnow()) == [], "another claim's stamp renews nothing"
    later = utcnow()
    assert claims.renew([delivery_id], claimed_at, later) == [delivery_id]
    db.session.commit()
    assert db.session.get(Delivery, delivery_id).claimed_at == later


def test_rerouting_a_routed_notification_creates_no_second_delivery(app, smtp_server, run_jobs):
    make_recipient(external_id="ana", email="ana@example.com")
    notification_id = email_notification("ana")
    route_notification(notification_id)
    route_notification(notification_id)
    run_jobs()  # email is dispatched in a job of its own; both routings enqueued one, one claim wins
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 1
    assert len(smtp_server.messages) == 1


def test_fifty_concurrent_replays_of_one_post_make_one_notification(app, live_server, api_key):
    make_recipient(external_id="ana")
    body = {"user_id": "ana", "type": "transactional", "title": "Hi", "body": "once", "channels": ["in_app"]}
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": "replayed-50-times"}

    def post(_):
        return httpx.post(f"{live_server}/v1/notifications", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(post, range(50)))
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    db.session.remove()
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


@pytest.mark.slow
def test_sigkilled_worker_loses_nothing_and_sends_nothing_twice(app, smtp_server, test_env):
    count = 40
    for n in range(count):
        make_recipient(external_id=f"r{n}", email=f"r{n}@example.com")
    notification_ids = [email_notification(f"r{n}", body=f"message {n}") for n in range(count)]
    smtp_server.handler.rcpt_delay_seconds = 0.05  # the worker spends its time waiting here, before DATA

    env = {**os.environ, **test_env, "SMTP_URL": smtp_server.url, "HERALD_DISPATCH_LEASE_SECONDS": "1"}
    worker_args = ["--burst", "normal"]
    victim = start_worker(worker_args, env)
    deadline = time.monotonic() + 60
    while len(smtp_server.messages) < 10 and time.monotonic() < deadline:
        time.sleep(0.005)
    # Kill while the worker waits on a RCPT answer: mid-job, claimed, and provably before DATA.
    assert smtp_server.handler.waiting_in_rcpt.wait(10)
    kill_worker(victim)
    assert len(smtp_server.messages) < count, "the worker finished before it could be killed"

    # RQ notices the dead worker's job once its heartbeat lapses (about 70 s); we move the clock past that.
    connection = get_redis()
    registry = StartedJobRegistry(queue=Queue("normal", connection=connection), connection=connection)
    assert registry.get_job_ids(), "the killed worker's job should still be registered as started"
    registry.cleanup(timestamp=time.time() + 600)
    assert not registry.get_job_ids()

    time.sleep(1.1)  # let the claim lease (1 s) of the killed worker's in-flight delivery expire
    app.config["DISPATCH_LEASE_SECONDS"], saved = 1, app.config["DISPATCH_LEASE_SECONDS"]
    try:
        from datetime import timedelta

        redrive_stuck_work(utcnow(), lease_seconds=1, stale_after=timedelta(0))
    finally:
        app.config["DISPATCH_LEASE_SECONDS"] = saved
    survivor = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", *worker_args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert survivor.returncode == 0, survivor.stderr.decode()[-2000:]

    db.session.remove()
    statuses = db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    assert dict(statuses) == {"DISPATCHED": count}
    received = smtp_server.message_ids()
    expected = {f"<herald-{nid}-email@herald.local>" for nid in notification_ids}
    assert set(received) == expected, "every notification arrived"
    assert len(received) == count, f"duplicates at the SMTP server: {len(received) - count}"
    sending_events = db.session.scalar(
        select(func.count()).select_from(DeliveryEvent).where(DeliveryEvent.status == "SENDING")
    )
    assert sending_events >= count
