"""A worker SIGKILLed while a provider batch request is in flight: only that claimed group can be in doubt.

The Postmark peer accepts the second request of the run (500 messages) and holds its answer; the worker
is killed then. The provider has the messages, Herald has them claimed (SENDING) and unrecorded. After
the lease a second worker and the reaper finish the campaign: marketing in that group becomes UNCERTAIN
(never sent twice), transactional goes again with the same key (Postmark ``Metadata.herald_key``), and
nothing outside that group is repeated or lost.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from app.campaigns import store
from app.extensions import db
from app.models import Delivery, Notification
from jobs.maintenance import run_maintenance
from tests.conftest import kill_worker, start_worker, stop_worker
from tests.factories import make_staff, make_template
from tests.integration.test_campaigns import campaign_fields, seed
from tests.integration.test_crash_window import campaign_status
from tests.integration.test_email_api import POSTMARK_TOKEN
from tests.peers.email_apis import PostmarkPeer

COUNT = 1200
GROUP = 500  # Postmark's batch: what the pipeline claims at once
LEASE = 3


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transactional", "marketing"])
def test_sigkill_during_a_batch_request_leaves_in_doubt_only_the_claimed_group(app, test_env, kind):
    peer = PostmarkPeer(POSTMARK_TOKEN).start()
    peer.hold_request, peer.hold_seconds = 2, 60.0
    try:
        seed(COUNT)
        marketer = make_staff(email="mia@example.com", role="marketer")
        content = {"subject": "Hello", "html": "<p>Hello {{ recipient.id }}</p>", "text": "Hello"}
        template = make_template("crash", type=kind, category="news", variants={"en": {"email": content}})
        campaign = store.create_campaign(campaign_fields(template.id, channels=["email"]), marketer)
        campaign_id = campaign.id
        env = {
            **os.environ,
            **test_env,
            "EMAIL_PROVIDER": "postmark",
            "POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN,
            "POSTMARK_API_URL": peer.url,
            "HERALD_DISPATCH_LEASE_SECONDS": str(LEASE),
            "HERALD_CHANNEL_SLOTS": "2",
        }
        victim = start_worker([], env)
        assert store.launch(campaign, marketer) == []
        deadline = time.monotonic() + 90
        while len(peer.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        kill_worker(victim)
        killed_at = time.monotonic()
        assert len(peer.requests) == 2, "the held request never arrived"
        in_flight = db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "SENDING"))
        assert 0 < in_flight <= GROUP

        peer.hold_request = 0
        survivor = start_worker([], env)
        app.config["DISPATCH_LEASE_SECONDS"], saved = LEASE, app.config["DISPATCH_LEASE_SECONDS"]
        try:
            while campaign_status(campaign_id) != "finished" and time.monotonic() - killed_at < LEASE + 60:
                run_maintenance(LEASE)
                time.sleep(1)
        finally:
            app.config["DISPATCH_LEASE_SECONDS"] = saved
            stop_worker(survivor)
        assert campaign_status(campaign_id) == "finished"
        statuses = Counter(
            dict(db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
        )
        copies = Counter(m["key"] for m in peer.mails)
        repeats = sum(n - 1 for n in copies.values())
        assert db.session.scalar(select(func.count()).select_from(Notification)) == COUNT
        assert len(copies) == COUNT, "every message reached the provider (the held group before the kill)"
        if kind == "marketing":
            assert repeats == 0, "marketing is never sent twice"
            assert statuses == Counter({"DISPATCHED": COUNT - in_flight, "UNCERTAIN": in_flight})
        else:
            assert 0 < repeats <= in_flight, "only the group in flight went again, with the same key"
            assert statuses == Counter({"DISPATCHED": COUNT})
    finally:
        peer.stop()
