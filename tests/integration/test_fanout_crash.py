"""A worker SIGKILLed in the middle of a campaign batch; the batch job re-runs and duplicates nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from rq import Queue
from rq.registry import StartedJobRegistry
from sqlalchemy import func, insert, select

from app.campaigns import store
from app.channels import channel_class
from app.extensions import db
from app.models import Campaign, CampaignBatch, Delivery, Notification, Recipient
from app.models.types import utcnow
from app.redis_client import get_redis
from jobs.campaigns import plan_campaign
from tests.conftest import PROJECT_ROOT, kill_worker, start_worker
from tests.factories import make_staff, make_template

COUNT = 300


@pytest.mark.slow
def test_sigkilled_batch_reruns_without_a_second_notification_inbox_entry_or_unrecognisable_email(
    app, smtp_server, test_env
):
    now = utcnow()
    db.session.execute(
        insert(Recipient),
        [
            {
                "external_id": f"k{n}",
                "email": f"k{n}@example.com",
                "timezone": "Europe/Lisbon",
                "locale": "en",
                "attributes": {},
                "hard_stop": False,
                "created_at": now,
                "updated_at": now,
            }
            for n in range(COUNT)
        ],
    )
    db.session.commit()
    marketer = make_staff(email="mia@example.com", role="marketer")
    # Transactional: what was in flight at the kill goes again (at least once). A marketing campaign's in-flight
    # sends are left UNCERTAIN instead (at most once): tests/integration/test_crash_window.py.
    template = make_template(
        "flash",
        type="transactional",
        category="promo",
        variants={
            "en": {
                "in_app": {"title": "Flash sale", "body": "Today only"},
                "email": {"subject": "Flash sale", "html": "<p>Today only</p>", "text": "Today only"},
            }
        },
    )
    campaign = store.create_campaign(
        store.CampaignFields(
            name="Flash",
            template_id=template.id,
            audience_filter={"all": []},
            audience_name=None,
            channels=["in_app", "email"],
            schedule="now",
            send_at=None,
            local_time=None,
            throttle_per_minute=None,
            ends_at=None,
        ),
        marketer,
    )
    campaign_id = campaign.id
    assert store.launch(campaign, marketer) == []
    plan_campaign(campaign_id)
    get_redis().delete(*get_redis().keys("rq:queue:normal"))  # the plan job ran inline above
    assert db.session.scalar(select(func.count()).select_from(CampaignBatch)) == 1

    smtp_server.handler.rcpt_delay_seconds = 0.01  # the worker spends its time inside the provider call
    env = {
        **os.environ,
        **test_env,
        "SMTP_URL": smtp_server.url,
        "HERALD_DISPATCH_LEASE_SECONDS": "1",
        "HERALD_CHANNEL_SLOTS": "2",
    }
    worker_args = ["--burst", "low"]
    victim = start_worker(worker_args, env)
    deadline = time.monotonic() + 60
    while len(smtp_server.messages) < 130 and time.monotonic() < deadline:
        time.sleep(0.005)
    kill_worker(victim)
    sent_before_kill = len(smtp_server.messages)
    assert sent_before_kill < COUNT, "the worker finished the batch before it could be killed"

    db.session.remove()
    inbox = db.session.scalar(select(func.count()).select_from(Notification).where(Notification.inbox_at.is_not(None)))
    assert inbox == COUNT, "in-app went out for the whole batch before the email channel started"
    assert db.session.scalar(select(CampaignBatch.status)) == "pending"

    # RQ notices the dead worker once its job timeout lapses; move the clock past that instead of waiting.
    connection = get_redis()
    registry = StartedJobRegistry(queue=Queue("low", connection=connection), connection=connection)
    assert registry.get_job_ids(), "the killed worker's batch job is still registered as started"
    registry.cleanup(timestamp=time.time() + 3600)  # it has retries left: scheduled again after its retry interval
    low = Queue("low", connection=connection)
    [retried] = low.scheduled_job_registry.get_job_ids()
    time.sleep(1.1)  # the killed worker's claims (lease 1 s) expire
    low.scheduled_job_registry.remove(retried)  # what RQ's scheduler does when the retry interval is up
    low.enqueue_job(low.fetch_job(retried))
    survivor = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", *worker_args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        timeout=180,
    )
    assert survivor.returncode == 0, survivor.stderr.decode()[-2000:]

    db.session.remove()
    per_recipient = db.session.execute(
        select(Notification.recipient_id, func.count())
        .where(Notification.campaign_id == campaign_id)
        .group_by(Notification.recipient_id)
    ).all()
    assert len(per_recipient) == COUNT and {count for _r, count in per_recipient} == {1}
    assert (
        db.session.scalar(select(func.count()).select_from(Notification).where(Notification.inbox_at.is_not(None)))
        == COUNT
    )
    statuses = dict(
        db.session.execute(
            select(Delivery.channel, func.count())
            .where(Delivery.status.in_(("DELIVERED", "DISPATCHED")))
            .group_by(Delivery.channel)
        ).all()
    )
    assert statuses == {"in_app": COUNT, "email": COUNT}
    assert db.session.get(Campaign, campaign_id).status == "finished"

    received = Counter(smtp_server.message_ids())
    expected = {
        f"<herald-{n}-email@herald.local>"
        for n in db.session.scalars(select(Notification.id).where(Notification.campaign_id == campaign_id))
    }
    assert set(received) == expected, "every email arrived"
    repeats = sum(count - 1 for count in received.values())
    # Only what was in flight at the kill (the channel's concurrency) can be sent again, and with the same
    # Message-ID (the delivery's idempotency key), so a receiver recognises the copy.
    in_flight = channel_class("email").concurrent_sends
    assert repeats <= in_flight, f"{repeats} emails repeated: more than the {in_flight} in flight"
