"""A worker SIGKILLed mid-batch leaves unrecorded only what was in flight, and the campaign resumes within the lease.

Counting peers (SMTP, a Twilio-shaped SMS API, FCM) record every message they
accept. After the kill, a second worker and the reaper (as the scheduler runs
it) finish the campaign: transactional messages in flight at the kill go again
with the same key (at least once: duplicates at most the channel's
concurrency); marketing ones do not (at most once: ``UNCERTAIN``, never a
duplicate). Nothing is lost.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from sqlalchemy import func, insert, select

from app.campaigns import store
from app.channels import channel_class
from app.extensions import db
from app.models import Campaign, Delivery, Device, Notification, Preference, Recipient
from app.models.types import utcnow
from app.pipeline import sending
from app.redis_client import get_redis
from jobs.campaigns import plan_campaign
from jobs.maintenance import run_maintenance
from tests.conftest import kill_worker, start_worker, stop_worker
from tests.factories import make_staff, make_template
from tests.integration.test_fcm import fcm  # noqa: F401  (a fixture)
from tests.integration.test_sms import ACCOUNTS, MAIN
from tests.peers.twilio import TwilioApi

COUNT = 200
KILL_AFTER = 60
LEASE = 3
PEER_DELAY = 0.02  # seconds per message at the provider: the worker spends its time inside the provider call


class SlowTwilio(TwilioApi):
    def handle(self, method, path, headers, body):
        time.sleep(PEER_DELAY)
        return super().handle(method, path, headers, body)


@pytest.fixture
def peers(app, smtp_server, fcm, tmp_path):  # noqa: F811
    """Each channel's counting peer, and the settings a worker process needs to reach it."""
    twilio = SlowTwilio(ACCOUNTS).start()
    smtp_server.handler.rcpt_delay_seconds = PEER_DELAY
    original_fcm_handle = fcm.handle

    def slow_fcm(*args):
        if args[1] != "/token":
            time.sleep(PEER_DELAY)
        return original_fcm_handle(*args)

    fcm.handle = slow_fcm
    env = {
        "SMTP_URL": smtp_server.url,
        "TWILIO_ACCOUNT_SID": MAIN,
        "TWILIO_AUTH_TOKEN": ACCOUNTS[MAIN],
        "TWILIO_FROM": "+15005550006",
        "TWILIO_API_BASE": twilio.url,
        "HERALD_SMS_RATE": "100000/second",
        "FCM_BASE": app.config["FCM_BASE"],
        "FCM_PROJECT_ID": app.config["FCM_PROJECT_ID"],
        "FCM_SERVICE_ACCOUNT_FILE": app.config["FCM_SERVICE_ACCOUNT_FILE"],
    }
    received = {
        "email": lambda: smtp_server.message_ids(),
        "sms": lambda: [m["To"] for m in twilio.messages],
        "push": lambda: [m["token"] for m in fcm.messages],
    }
    yield env, received
    twilio.stop()


def seed_and_launch(channel: str, kind: str) -> int:
    now = utcnow()
    db.session.execute(
        insert(Recipient),
        [
            {
                "external_id": f"w{n}",
                "email": f"w{n}@example.com",
                "phone": f"+1415555{n:04d}",
                "timezone": None,
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
    if channel == "sms":  # marketing by SMS needs an explicit opt-in
        db.session.execute(
            insert(Preference),
            [
                {"recipient_id": rid, "channel": "sms", "category": "news", "enabled": True, "updated_at": now}
                for rid in db.session.scalars(select(Recipient.id))
            ],
        )
        db.session.commit()
    if channel == "push":
        db.session.execute(
            insert(Device),
            [
                {
                    "recipient_id": rid,
                    "platform": "android",
                    "token": f"tok-{rid:06d}",
                    "active": True,
                    "created_at": now,
                }
                for rid in db.session.scalars(select(Recipient.id))
            ],
        )
        db.session.commit()
    marketer = make_staff(email="mia@example.com", role="marketer")
    content = {
        "email": {"subject": "Hello", "html": "<p>Hello</p>", "text": "Hello"},
        "sms": {"text": "Hello"},
        "push": {"title": "Hello", "body": "There"},
    }[channel]
    template = make_template("crash", type=kind, category="news", variants={"en": {channel: content}})
    campaign = store.create_campaign(
        store.CampaignFields(
            name="Crash",
            template_id=template.id,
            audience_filter={"all": []},
            audience_name=None,
            channels=[channel],
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
    get_redis().delete(*get_redis().keys("rq:queue:normal") or ["none"])  # the plan job ran inline above
    return campaign_id


def hand_off_notes() -> tuple[set[int], set[int]]:
    """(handed, never handed): the deliveries a dead sender left SENDING, split by its hand-off notes."""
    db.session.remove()
    left = db.session.execute(select(Delivery.id, Delivery.claimed_at).where(Delivery.status == "SENDING")).all()
    never = sending.never_handed([(d, at) for d, at in left])
    return {d for d, _at in left} - never, never


def campaign_status(campaign_id: int) -> str:
    db.session.remove()
    return db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transactional", "marketing"])
@pytest.mark.parametrize("channel", ["sms", "email", "push"])
def test_sigkill_mid_batch_loses_nothing_repeats_at_most_what_was_in_flight_and_finishes_within_the_lease(
    app, test_env, peers, channel, kind
):
    env_extra, received = peers
    campaign_id = seed_and_launch(channel, kind)
    env = {
        **os.environ,
        **test_env,
        **env_extra,
        "HERALD_DISPATCH_LEASE_SECONDS": str(LEASE),
        "HERALD_CHANNEL_SLOTS": "2",
    }
    victim = start_worker(["low"], env)
    deadline = time.monotonic() + 90
    while len(received[channel]()) < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.005)
    kill_worker(victim)
    killed_at = time.monotonic()
    assert len(received[channel]()) < COUNT, "the worker finished the batch before it could be killed"
    handed, never_handed = hand_off_notes()
    adapter = channel_class(channel)
    assert len(handed) <= sending.ahead(adapter) + sending.FLUSH_EVERY, "more handed out than the window allows"
    if adapter.asynchronous:  # one window holds the whole batch: the kill leaves claims not handed out yet
        assert never_handed, "the dead worker's window held claims it had not handed to the client yet"

    survivor = start_worker([], env)  # every queue: re-driven deliveries go to their priority's queue
    try:
        app.config["DISPATCH_LEASE_SECONDS"], saved = LEASE, app.config["DISPATCH_LEASE_SECONDS"]
        try:
            while campaign_status(campaign_id) != "finished" and time.monotonic() - killed_at < LEASE + 60:
                run_maintenance(LEASE)  # what the scheduler runs every 30 s: abandoned jobs, expired claims
                time.sleep(1)
        finally:
            app.config["DISPATCH_LEASE_SECONDS"] = saved
        finished_after = time.monotonic() - killed_at
    finally:
        stop_worker(survivor)

    assert campaign_status(campaign_id) == "finished", f"not finished {finished_after:.0f} s after the kill"
    assert finished_after <= LEASE + 60
    statuses = Counter(dict(db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()))
    copies = Counter(received[channel]())
    repeats = sum(count - 1 for count in copies.values())
    assert db.session.scalar(select(func.count()).select_from(Notification)) == COUNT
    if kind == "marketing":
        assert repeats == 0, "marketing is never sent twice"
        uncertain = set(db.session.scalars(select(Delivery.id).where(Delivery.status == "UNCERTAIN")))
        assert uncertain <= handed, "only a delivery handed to the client may become UNCERTAIN"
        assert not uncertain & never_handed, "a claim never handed to the client is sent, not made UNCERTAIN"
        assert statuses["DISPATCHED"] + statuses["UNCERTAIN"] == COUNT
        assert len(copies) >= COUNT - statuses["UNCERTAIN"], "every message not marked uncertain arrived"
    else:
        assert len(copies) == COUNT, "every message arrived"
        assert repeats <= len(handed), f"{repeats} repeats: more than the {len(handed)} handed out at the kill"
        assert statuses == Counter({"DISPATCHED": COUNT})
