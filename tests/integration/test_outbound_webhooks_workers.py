"""Outbound webhooks with real worker processes: a dispatcher SIGKILLed mid-POST re-sends only the message in flight,
and an endpoint that sleeps never slows sends down (the dispatcher has its own queue and worker)."""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Notification, WebhookEndpoint, WebhookMessage
from app.outbound_webhooks.dispatch import tick
from app.outbound_webhooks.events import ALL_EVENT_TYPES, Fact
from app.outbound_webhooks.outbox import emit
from app.outbound_webhooks.signing import new_secret
from tests.conftest import kill_worker, start_worker
from tests.factories import make_recipient
from tests.peers.webhook import WebhookPeer

LEASE = 2


def add_endpoint(url: str, event_types=ALL_EVENT_TYPES) -> int:
    endpoint = WebhookEndpoint(
        url=url,
        description="",
        event_types=list(event_types),
        secret=new_secret(),
        enabled=True,
        consecutive_failures=0,
    )
    db.session.add(endpoint)
    db.session.commit()
    return endpoint.id


def worker_env(test_env: dict, **extra: str) -> dict:
    return {**os.environ, **test_env, "HERALD_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", **extra}


def wait_for(condition, timeout: float, message: str, every=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        if every:
            every()
        time.sleep(0.1)
        db.session.remove()


@pytest.mark.slow
def test_a_dispatcher_killed_after_its_claim_resends_only_the_message_in_flight(app, test_env, monkeypatch):
    # This process plays the scheduler: its tick must know the workers' lease, or it waits out the default one.
    monkeypatch.setitem(app.config, "WEBHOOK_LEASE_SECONDS", LEASE)
    peer = WebhookPeer().start()
    peer.hold_request = 2  # the second POST hangs until released: the dispatcher dies with it in flight
    try:
        add_endpoint(f"{peer.url}/hook", ["notification.read"])
        emit([Fact("notification.read", {"user_id": f"user-{n}", "notification_id": f"n{n}"}) for n in range(3)])
        db.session.commit()  # nudges the dispatcher
        env = worker_env(
            test_env,
            HERALD_WEBHOOK_CONCURRENCY="1",
            HERALD_WEBHOOK_LEASE_SECONDS=str(LEASE),
            HERALD_WEBHOOK_TIMEOUT="30",
        )
        victim = start_worker(["webhooks"], env)
        try:
            assert peer.holding.wait(30), "the dispatcher never reached the second message"
        finally:
            kill_worker(victim)
        peer.release.set()
        assert db.session.scalar(select(func.count()).where(WebhookMessage.status == "sending")) == 1

        survivor = start_worker(["webhooks"], env)
        try:
            # tick() is what the scheduler runs every 10 s: it nudges once the dead claim's lease is over.
            wait_for(
                lambda: db.session.scalar(select(func.count()).where(WebhookMessage.status == "delivered")) == 3,
                LEASE + 90,  # a worker starts slowly on a busy machine
                "the survivor did not finish",
                every=tick,
            )
        finally:
            kill_worker(survivor)  # its work is done (and recorded); a warm stop would wait out RQ's idle dequeue
        copies = Counter(peer.ids())
        ids = db.session.scalars(select(WebhookMessage.msg_id).order_by(WebhookMessage.id)).all()
        assert [copies[msg_id] for msg_id in ids] == [1, 2, 1], "only the message in flight is sent twice"
    finally:
        peer.release.set()
        peer.stop()


def _send_and_time(api, users: list[str]) -> float:
    """Seconds from the first POST until every notification is in its inbox."""
    started = time.monotonic()
    for user in users:
        response = api.post(
            "/v1/notifications",
            json={
                "user_id": user,
                "type": "transactional",
                "category": "general",
                "channels": ["in_app"],
                "title": "Hi",
                "body": "b",
            },
        )
        assert response.status_code == 202
    wait_for(
        lambda: db.session.scalar(select(func.count()).where(Notification.inbox_at.is_(None))) == 0,
        60,
        "sends did not finish",
    )
    return time.monotonic() - started


@pytest.mark.slow
def test_an_endpoint_that_sleeps_never_slows_sends(app, api, test_env):
    users = [make_recipient(external_id=f"u{n}").external_id for n in range(20)]
    peer = WebhookPeer(sleep=2.0).start()
    env = worker_env(test_env, HERALD_WEBHOOK_TIMEOUT="5")
    workers = [start_worker([], env), start_worker(["webhooks"], env)]
    try:
        _send_and_time(api, users[:2])  # warm both workers up
        baseline = _send_and_time(api, users)
        add_endpoint(f"{peer.url}/hook")
        with_slow_peer = _send_and_time(api, users)
        heard = len(peer.received())
        total = db.session.scalar(select(func.count()).select_from(WebhookMessage))
        print(
            f"20 sends: {baseline:.2f} s without an endpoint, {with_slow_peer:.2f} s with one that sleeps 2 s "
            f"({heard} of {total} webhooks had reached it by then)"
        )
        assert total == 40  # accepted + delivered for each
        assert heard < total, "the peer kept up, so this proves nothing"
        assert with_slow_peer < baseline * 2 + 1.0
    finally:
        for process in workers:
            kill_worker(process)  # the dispatcher is still busy with the sleeping peer: nothing to wait for
        peer.stop()
