"""The safety net: work lost between a commit and its enqueue is found and finished, once."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

from sqlalchemy import func, select

from app.extensions import db
from app.models import ApiKey, Delivery, IdempotencyKey, Notification
from app.models.types import utcnow
from app.redis_client import get_redis
from jobs.maintenance import purge_expired_idempotency_keys, redrive_stuck_work
from tests.conftest import PROJECT_ROOT
from tests.factories import make_notification, make_recipient


def test_notification_whose_enqueue_was_lost_is_routed_by_the_reaper(app, run_jobs):
    recipient = make_recipient()
    notification_id = make_notification(
        recipient, created_at=utcnow() - timedelta(minutes=11)
    ).id  # committed, never enqueued
    assert redrive_stuck_work(utcnow(), lease_seconds=120) == {"notifications": 1, "deliveries": 0, "runs": 0}
    run_jobs()
    assert db.session.get(Notification, notification_id).status == "routed"
    assert db.session.scalar(select(Delivery.status)) == "DELIVERED"


def test_recent_work_is_left_to_its_own_job(app):
    make_notification(make_recipient())
    assert redrive_stuck_work(utcnow(), lease_seconds=120) == {"notifications": 0, "deliveries": 0, "runs": 0}


def test_deferred_delivery_whose_scheduled_job_vanished_is_sent_after_its_time(app, run_jobs):
    recipient = make_recipient()
    notification = make_notification(recipient, status="routed")
    long_ago = utcnow() - timedelta(hours=1)
    db.session.add(
        Delivery(
            notification_id=notification.id,
            channel="in_app",
            status="PENDING",
            not_before=long_ago,
            created_at=long_ago,
            updated_at=long_ago,
        )
    )
    db.session.commit()
    get_redis().flushdb()  # Redis restarted without persistence: RQ's scheduled jobs are gone
    assert redrive_stuck_work(utcnow(), lease_seconds=120)["deliveries"] == 1
    run_jobs()
    db.session.expire_all()
    assert db.session.scalar(select(Delivery.status)) == "DELIVERED"


def test_a_wait_whose_job_was_lost_is_re_driven_a_lease_after_its_time_not_ten_minutes_later(app, run_jobs):
    """A sender recorded "wait until T" and died before enqueueing the job for T: found once T is a lease past."""
    recipient = make_recipient()
    notification = make_notification(recipient, status="routed")
    now = utcnow()
    for waited in (30, 130):  # seconds since the time it was handed back for; the lease is 120 s
        db.session.add(
            Delivery(
                notification_id=notification.id if waited == 30 else make_notification(recipient, status="routed").id,
                channel="in_app",
                status="PENDING",
                not_before=now - timedelta(seconds=waited),
                created_at=now - timedelta(seconds=waited + 2),
                updated_at=now - timedelta(seconds=waited + 2),
            )
        )
    db.session.commit()
    assert redrive_stuck_work(now, lease_seconds=120)["deliveries"] == 1
    run_jobs()
    db.session.expire_all()
    assert sorted(db.session.scalars(select(Delivery.status))) == ["DELIVERED", "PENDING"]


def test_expired_idempotency_keys_are_purged(app, api_key):
    key_id = db.session.scalar(select(ApiKey.id))
    db.session.add_all(
        [
            IdempotencyKey(
                api_key_id=key_id,
                key="old",
                request_hash="x",
                notification_id="a" * 32,
                created_at=utcnow() - timedelta(hours=25),
            ),
            IdempotencyKey(
                api_key_id=key_id, key="new", request_hash="x", notification_id="b" * 32, created_at=utcnow()
            ),
        ]
    )
    db.session.commit()
    assert purge_expired_idempotency_keys(utcnow()) == 1
    assert db.session.scalars(select(IdempotencyKey.key)).all() == ["new"]


def test_scheduler_process_runs_the_reaper_and_stops_on_sigterm(app, test_env, run_jobs):
    recipient = make_recipient()
    notification_id = make_notification(recipient, created_at=utcnow() - timedelta(minutes=30)).id
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "scheduler"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **test_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while get_redis().llen("rq:queue:normal") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert get_redis().llen("rq:queue:normal") == 1, (
            "the scheduler's first maintenance pass re-enqueues the notification"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, process.stderr.read().decode()[-2000:]
    run_jobs()
    db.session.expire_all()
    assert db.session.get(Notification, notification_id).status == "routed"


def test_create_api_key_prints_a_working_key_once(runner, client):
    result = runner.invoke(args=["create-api-key", "billing", "--rate-limit", "100/second"])
    assert result.exit_code == 0, result.output
    plaintext = result.output.strip().splitlines()[-1]
    assert plaintext.startswith("hk_")
    stored = db.session.scalar(select(ApiKey))
    assert stored.key_hash != plaintext and plaintext not in stored.key_hash and stored.rate_limit == "100/second"
    make_recipient(external_id="ana")
    assert client.get("/v1/users/ana", headers={"Authorization": f"Bearer {plaintext}"}).status_code == 200


def test_create_api_key_rejects_a_malformed_rate(runner):
    result = runner.invoke(args=["create-api-key", "billing", "--rate-limit", "lots"])
    assert result.exit_code == 2 and "not a rate" in result.output
    assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 0
