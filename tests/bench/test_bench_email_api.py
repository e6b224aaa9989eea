"""Campaign over SendGrid-shaped batches: recipients/s end to end vs the floor of a bare client posting the same requests.

Two ``flask worker`` processes (this 2-core machine) send an email-only marketing campaign through the
``sendgrid`` provider API to the loopback SendGrid peer (``tests/peers/email_apis.py``, in a process of
its own, which validates each request as SendGrid does). The floor is a bare httpx client posting the
same Mail Send bodies (1,000 personalizations each, built the way the adapter builds them) to the same
peer, two threads (the two workers' worth). Figure and floor are measured in the same run, floor
before and after the campaign, and reported with their ratio.

``make bench`` runs 100,000 recipients (``HERALD_BENCH_EMAIL_RECIPIENTS`` overrides); the default run a
3,000-recipient smoke size.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing import Process

import httpx
import pytest
from rq import Worker
from sqlalchemy import func, select

from app.campaigns import store
from app.channels import Message, Outcome
from app.channels.email_api import Email
from app.channels.email_api.common import Sender, dumps
from app.channels.email_api.sendgrid import payload
from app.extensions import db
from app.models import Campaign, Delivery, Notification
from app.models.types import utcnow
from app.redis_client import get_redis
from tests.bench.harness import machine
from tests.bench.test_bench_campaign import seed_recipients
from tests.conftest import free_port, start_worker, stop_worker, wait_for_port
from tests.factories import make_staff, make_template

KEY = "SG.bench"
HTML = '<p>New colours, {{ recipient.id }}</p><p><a href="https://shop.example/spring">Shop</a></p>'


def run_peer(port: int) -> None:
    from tests.peers.email_apis import SendGridPeer

    peer = SendGridPeer(KEY, port=port)
    peer.keep_mails = False
    peer.server.serve_forever()


@contextmanager
def peer_process():
    port = free_port()
    process = Process(target=run_peer, args=(port,), daemon=True)
    process.start()
    wait_for_port(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.join(5)


def bench_messages(recipients: int) -> list[list[Message]]:
    """The campaign's messages as the pipeline hands them over (per-recipient body and unsubscribe link), by 1,000."""
    return [
        [
            Message(
                delivery_id=n,
                recipient_id=n,
                notification_id=f"n{n}",
                channel="email",
                idempotency_key=f"herald-n{n}-email",
                recipient_external_id=f"bench-{n}",
                notification_type="marketing",
                category="promo",
                priority="low",
                content={
                    "subject": "Spring is here",
                    "html": HTML.replace("{{ recipient.id }}", f"bench-{n}"),
                    "text": "New colours",
                },
                address=f"b{n}@example.com",
                headers={"List-Unsubscribe": f"<http://127.0.0.1/unsubscribe/token-{n}>"},
            )
            for n in range(start, min(recipients, start + 1000))
        ]
        for start in range(0, recipients, 1000)
    ]


def floor_rate(url: str, recipients: int) -> float:
    """Recipients/s of a bare client posting the adapter's request bodies (built beforehand), two in flight."""
    sender = Sender("no-reply@herald.local", "Herald")
    bodies = [(len(group), dumps(payload(group, sender))) for group in bench_messages(recipients)]
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    with httpx.Client(timeout=30) as client:

        def post(item):
            response = client.post(url + "/v3/mail/send", content=item[1], headers=headers)
            assert response.status_code == 202, response.text
            return item[0]

        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            sent = sum(pool.map(post, bodies))
        return sent / (time.perf_counter() - started)


def adapter_rate(app, url: str, recipients: int) -> float:
    """Recipients/s of the email adapter's send_batch on the same messages (framing, JSON, breaker, HTTP), two threads."""
    groups = bench_messages(recipients)
    config = {**app.config, "EMAIL_PROVIDER": "sendgrid", "SENDGRID_API_KEY": KEY, "SENDGRID_API_URL": url}
    config["EMAIL_DOMAIN_RATE"] = 0.0
    adapter = Email(config)

    def send(group):
        with app.app_context():
            results = adapter.send_batch(group)
        assert all(r.outcome is Outcome.DISPATCHED for r in results), results[0]
        return len(results)

    try:
        send(groups[0][:1])  # the pooled client's start-up is not per batch
        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            sent = sum(pool.map(send, groups))
        return sent / (time.perf_counter() - started)
    finally:
        adapter.close()


def email_api_benchmark(app, bench_env: dict, recipients: int, timeout_s: float) -> dict:
    seed_recipients(recipients)
    staff = make_staff(email="bench@example.com", password="correct horse battery", role="marketer")
    template = make_template(
        "spring",
        type="marketing",
        category="promo",
        variants={"en": {"email": {"subject": "Spring is here", "html": HTML, "text": "New colours"}}},
    )
    campaign = store.create_campaign(
        store.CampaignFields(
            name="Bench",
            template_id=template.id,
            audience_filter={"all": []},
            audience_name=None,
            channels=["email"],
            schedule="now",
            send_at=None,
            local_time=None,
            throttle_per_minute=None,
            ends_at=None,
        ),
        staff,
    )
    campaign_id = campaign.id
    with peer_process() as url:
        floor_before = floor_rate(url, min(recipients, 50_000))
        adapter_alone = adapter_rate(app, url, min(recipients, 50_000))
        env = {
            **bench_env,
            "EMAIL_PROVIDER": "sendgrid",
            "SENDGRID_API_KEY": KEY,
            "SENDGRID_API_URL": url,
            "HERALD_CHANNEL_SLOTS": "2",
        }
        workers = [start_worker(["critical", "high", "normal", "low"], env) for _ in range(2)]
        try:
            deadline = time.monotonic() + 60
            while Worker.count(connection=get_redis()) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)  # a worker's start-up (imports) is not the campaign's time
            launched_wall = utcnow()
            launched = time.perf_counter()
            assert store.launch(db.session.get(Campaign, campaign_id), staff) == []
            status = "running"
            while time.perf_counter() < launched + timeout_s:
                db.session.remove()
                status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
                if status == "finished":
                    break
                time.sleep(0.2)
            seconds = time.perf_counter() - launched
        finally:
            for worker in workers:
                stop_worker(worker)
        floor_after = floor_rate(url, min(recipients, 50_000))
    db.session.remove()
    sent = db.session.scalar(
        select(func.count())
        .select_from(Delivery)
        .join(Notification)
        .where(
            Notification.campaign_id == campaign_id, Delivery.status == "DISPATCHED", Delivery.provider == "sendgrid"
        )
    )
    first, last = db.session.execute(
        select(func.min(Delivery.created_at), func.max(Delivery.updated_at))
        .join(Notification)
        .where(Notification.campaign_id == campaign_id)
    ).one()
    seconds = (last - launched_wall).total_seconds()
    rate = sent / seconds
    sending = sent / (last - first).total_seconds()
    floor = (floor_before + floor_after) / 2
    print(
        f"\n[bench] campaign over SendGrid batches on {db.engine.dialect.name}: {recipients} recipients, 2 workers: "
        f"status {status}, {sent} dispatched, launch -> last delivery recorded {seconds:.1f} s = "
        f"{rate:.0f} recipients/s end to end ({sending:.0f}/s from the first delivery row to the last record); floor (bare client posting the same 1,000-personalization "
        f"requests to the same peer, 2 in flight): {floor_before:.0f} before, {floor_after:.0f} after; "
        f"ratio {rate / floor:.3f}; the email adapter alone on the same messages (send_batch, 2 threads): "
        f"{adapter_alone:.0f}/s, ratio {adapter_alone / floor:.2f} ({machine()})"
    )
    return {"status": status, "sent": sent, "rate": rate, "floor": floor, "sending": sending, "adapter": adapter_alone}


def test_campaign_over_sendgrid_batches_smoke(app, bench_env):
    result = email_api_benchmark(app, bench_env, recipients=3000, timeout_s=60)
    assert result["status"] == "finished" and result["sent"] == 3000


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_campaign_over_sendgrid_batches(app, bench_env):
    recipients = int(os.environ.get("HERALD_BENCH_EMAIL_RECIPIENTS", "100000"))
    result = email_api_benchmark(app, bench_env, recipients=recipients, timeout_s=1800)
    assert result["sent"] > 0
