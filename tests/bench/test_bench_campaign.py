"""Campaign fan-out benchmark: recipients/s from launch to the last delivery recorded.

Two ``flask worker`` processes (this 2-core machine) fan a campaign out on
in-app + one external channel. The external channel is a fake registered only
in the benchmark's worker processes: it replaces the email adapter with one
that POSTs each message to a local HTTP sink over a pooled httpx client (the
SMTP sink is far too slow for a million). Reported in the same run:

- end-to-end recipients/s (launch -> last delivery row updated);
- the raw bulk-insert rate of the same rows (notifications + 2 deliveries per
  recipient, set-based, no routing, no sends): the ceiling, and the ratio;
- dashboard ``GET /`` latency (p50/p99) as a signed-in staff member, via httpx
  against gunicorn, sampled while the fan-out runs.

`make bench` runs 1,000,000 recipients (``HERALD_BENCH_RECIPIENTS`` overrides; a run that
cannot finish within ``HERALD_BENCH_FANOUT_SECONDS`` reports the rate of what it did) and an
in-app-only variant (200,000: Herald's own batch work without a provider round trip); the
default run a 5,000 smoke size.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from multiprocessing import Process, Queue

import httpx
import pytest
from sqlalchemy import delete, func, select, text

from app.campaigns import store
from app.delivery.constants import PENDING, SENDING
from app.delivery.rendering import renderer_for
from app.extensions import db
from app.models import Campaign, Delivery, Notification, Recipient
from app.models.bulk import insert_ignoring_conflicts
from app.models.notifications import new_notification_id
from app.models.types import utcnow
from tests.bench import floors
from tests.bench.harness import gunicorn, machine, percentile, summary
from tests.conftest import PROJECT_ROOT, free_port, stop_worker, wait_for_port
from tests.factories import make_staff, make_template

STAFF_EMAIL, STAFF_PASSWORD = "bench@example.com", "correct horse battery"


# -- the fake provider: a local HTTP sink and an adapter that only the benchmark's workers load ----


def run_sink(port: int) -> None:
    """Answers every HTTP/1.1 request with a tiny 200, keep-alive; counts nothing, parses only what it must."""
    response = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"id":"bench"}\n'

    class Sink(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""

        def data_received(self, data):
            self.buffer += data
            while True:
                head_end = self.buffer.find(b"\r\n\r\n")
                if head_end < 0:
                    return
                match = re.search(rb"(?i)content-length:\s*(\d+)", self.buffer[:head_end])
                length = int(match.group(1)) if match else 0
                if len(self.buffer) < head_end + 4 + length:
                    return
                self.buffer = self.buffer[head_end + 4 + length :]
                self.transport.write(response)

    async def main():
        server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port, backlog=512)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


CONCURRENCY = 16  # requests in flight per worker, for Herald's adapter and for the raw client floor alike


def register_bench_email() -> None:
    """Replace the email adapter, in this process only, with an HTTP call to the sink through Herald's client."""
    from app.channels.base import Outcome, Result, register
    from app.channels.email import SmtpEmail
    from app.channels.guard_async import guarded_async
    from app.channels.http import FastClient

    @register("email")
    class BenchEmail(SmtpEmail):
        asynchronous = True
        concurrent_sends = CONCURRENCY

        def __init__(self, app_config):
            super().__init__(app_config)
            self.url = os.environ["HERALD_BENCH_SINK_URL"]
            self.client = FastClient(app_config, limit=CONCURRENCY)

        async def send_async(self, message):
            body = {"to": message.address, "subject": message.content["subject"], "key": message.idempotency_key}
            return await guarded_async("bench", lambda: self._post(body, message.idempotency_key))

        async def _post(self, body, key):
            response = await self.client.post(self.url, json_body=body)
            if response.status_code != 200:
                return Result(Outcome.TRANSIENT, "bench", error_code=str(response.status_code), provider_fault=True)
            return Result(Outcome.DISPATCHED, "bench", provider_message_id=key)


def client_alone(url: str, requests: int, answers) -> None:
    """The raw floor in one process: Herald's client alone, ``CONCURRENCY`` in flight, the bench adapter's body."""
    from app.channels.http import FastClient, run_sync

    client = FastClient({}, limit=CONCURRENCY)
    body = {"to": "b1@example.com", "subject": "Spring is here", "key": "k"}

    async def one_lane(count):
        for _ in range(count):
            assert (await client.post(url, json_body=body)).status_code == 200

    async def lanes():
        started = time.perf_counter()
        await asyncio.gather(*(one_lane(requests // CONCURRENCY) for _ in range(CONCURRENCY)))
        return time.perf_counter() - started

    answers.put((requests // CONCURRENCY * CONCURRENCY, run_sync(lanes())))


def client_floor(url: str, processes: int, requests: int) -> float:
    """Requests/s of the client alone in as many processes as the campaign has workers (summed)."""
    answers = Queue()
    runs = [Process(target=client_alone, args=(url, requests, answers)) for _ in range(processes)]
    for run in runs:
        run.start()
    results = [answers.get(timeout=300) for _ in runs]
    for run in runs:
        run.join(30)
    return sum(count / seconds for count, seconds in results)


def worker_main() -> None:
    """``python -c 'import tests.bench.test_bench_campaign as b; b.worker_main()' QUEUE...``: ``flask worker``
    with the bench adapter registered first."""
    from flask.cli import main

    register_bench_email()
    sys.argv = ["flask", "--app", "wsgi", "worker", *sys.argv[1:]]
    main()


@contextmanager
def bench_workers(env: dict, count: int):
    code = "import tests.bench.test_bench_campaign as b; b.worker_main()"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, "critical", "high", "normal", "low"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    try:
        time.sleep(2.0)
        yield processes
    finally:
        for process in processes:
            stop_worker(process)


@contextmanager
def sink():
    port = free_port()
    process = Process(target=run_sink, args=(port,), daemon=True)
    process.start()
    wait_for_port(port)
    try:
        yield f"http://127.0.0.1:{port}/send"
    finally:
        process.terminate()
        process.join(5)


# -- seeding -----------------------------------------------------------------------------------


def seed_recipients(count: int) -> None:
    """``count`` recipients in one INSERT ... SELECT over a generated series (no factories, no round trips)."""
    if db.engine.dialect.name == "postgresql":
        series = "SELECT g AS n FROM generate_series(1, :count) AS g"
        concat = "'bench-' || n"
        email = "'b' || n || '@example.com'"
        now = "now()"
        attributes = "jsonb_build_object('tier', n % 3)"
    else:
        series = (
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :count) SELECT n FROM seq"
        )
        concat = "'bench-' || n"
        email = "'b' || n || '@example.com'"
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
        attributes = "json_object('tier', n % 3)"
    db.session.execute(
        text(
            f"INSERT INTO recipients (external_id, email, timezone, locale, attributes, hard_stop, created_at, updated_at) "
            f"SELECT {concat}, {email}, 'Europe/Lisbon', 'en', {attributes}, false, {now}, {now} FROM ({series}) AS s"
        ),
        {"count": count},
    )
    db.session.commit()


def raw_insert_rate(template, sample: int, channels: tuple[str, ...]) -> float:
    """Rows/s of the same notifications + deliveries written set-based, in batches of 1000: the ceiling."""
    campaign = Campaign(
        name="ceiling",
        template_id=template.id,
        template_version=1,
        channels=list(channels),
        audience_filter={"all": []},
        schedule="now",
        status="cancelled",
        planned=0,
    )
    db.session.add(campaign)
    db.session.commit()
    ids = db.session.scalars(select(Recipient.id).order_by(Recipient.id).limit(sample)).all()
    started = time.perf_counter()
    for start in range(0, len(ids), 1000):
        now = utcnow()
        notifications = [
            {
                "id": new_notification_id(),
                "recipient_id": r,
                "type": "marketing",
                "category": "promo",
                "priority": "low",
                "template_key": template.key,
                "template_version": 1,
                "title": f"Spring for bench-{r}",
                "body": "New colours",
                "data": {},
                "channels": list(channels),
                "status": "routed",
                "created_at": now,
                "routed_at": now,
                "campaign_id": campaign.id,
            }
            for r in ids[start : start + 1000]
        ]
        insert_ignoring_conflicts(Notification, notifications, ["campaign_id", "recipient_id"])
        deliveries = [
            {
                "notification_id": n["id"],
                "channel": channel,
                "status": "DELIVERED",
                "reason": None,
                "not_before": None,
                "attempts": 1,
                "error_code": None,
                "last_error": None,
                "created_at": now,
                "updated_at": now,
            }
            for n in notifications
            for channel in channels
        ]
        insert_ignoring_conflicts(Delivery, deliveries, ["notification_id", "channel"])
        db.session.commit()
    rate = len(ids) / (time.perf_counter() - started)
    db.session.execute(
        delete(Delivery).where(
            Delivery.notification_id.in_(select(Notification.id).where(Notification.campaign_id == campaign.id))
        )
    )
    db.session.execute(delete(Notification).where(Notification.campaign_id == campaign.id))
    db.session.commit()
    return rate


def in_app_on_postgresql(channels: tuple[str, ...]) -> bool:
    return channels == ("in_app",) and db.engine.dialect.name == "postgresql"


def lean_floors(template, sample: int) -> dict[str, float]:
    """The lean prototype's and bare COPY's recipients/s over the same recipients (tests/bench/floors.py)."""
    campaign = Campaign(
        name="floors",
        template_id=template.id,
        template_version=1,
        channels=["in_app"],
        audience_filter={"all": []},
        schedule="now",
        status="cancelled",
        planned=0,
    )
    db.session.add(campaign)
    db.session.commit()
    ids = db.session.scalars(select(Recipient.id).order_by(Recipient.id).limit(sample)).all()
    db.session.commit()
    lean = floors.lean_rate(campaign.id, template, renderer_for(template, 1), ids)
    floors.cleanup(campaign.id, ids)
    copied = floors.copy_rate(campaign.id, template, ids)
    floors.cleanup(campaign.id, ids)
    return {"lean": lean, "copy": copied}


# -- the dashboard probe -----------------------------------------------------------------------


def signed_in_client(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/console/login").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page
    )
    response = client.post(
        "/console/login",
        data={"csrf_token": token.group(1), "email": STAFF_EMAIL, "password": STAFF_PASSWORD, "next": ""},
    )
    assert response.status_code == 302, response.text[:500]
    return client


def probe_dashboard(client: httpx.Client, stop: threading.Event, latencies: list[float], interval: float) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        response = client.get("/console/")
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200
        stop.wait(interval)


# -- the benchmark -----------------------------------------------------------------------------


def campaign_benchmark(
    bench_env: dict,
    recipients: int,
    timeout_s: float,
    ceiling_sample: int,
    channels: tuple[str, ...] = ("in_app", "email"),
    floor_requests: int = 2000,
) -> dict:
    backend = db.engine.dialect.name
    seed_started = time.perf_counter()
    seed_recipients(recipients)
    seed_seconds = time.perf_counter() - seed_started
    staff = make_staff(email=STAFF_EMAIL, password=STAFF_PASSWORD, role="marketer")
    template = make_template(
        "spring",
        type="marketing",
        category="promo",
        variants={
            "en": {
                "in_app": {"title": "Spring for {{ recipient.id }}", "body": "New colours"},
                "email": {
                    "subject": "Spring is here",
                    "html": "<p>New colours, {{ recipient.id }}</p>",
                    "text": "New colours",
                },
            }
        },
    )
    ceiling = raw_insert_rate(template, min(recipients, ceiling_sample), channels)
    prototype = lean_floors(template, min(recipients, ceiling_sample)) if in_app_on_postgresql(channels) else {}

    campaign = store.create_campaign(
        store.CampaignFields(
            name="Bench",
            template_id=template.id,
            audience_filter={"all": []},
            audience_name=None,
            channels=list(channels),
            schedule="now",
            send_at=None,
            local_time=None,
            throttle_per_minute=None,
            ends_at=None,
        ),
        staff,
    )
    campaign_id = campaign.id
    latencies: list[float] = []
    external = [c for c in channels if c != "in_app"]
    client_floors = []
    with sink() as sink_url, gunicorn(bench_env, workers=1) as base:
        env = {**bench_env, "HERALD_BENCH_SINK_URL": sink_url, "HERALD_CHANNEL_SLOTS": "2"}
        if external:  # the raw client floor, before and after the fan-out (alternating, same sink, same machine)
            client_floors.append(client_floor(sink_url, 2, floor_requests))
        with bench_workers(env, 2):
            client = signed_in_client(base)
            client.get("/console/")
            stop = threading.Event()
            probe = threading.Thread(target=probe_dashboard, args=(client, stop, latencies, 0.5), daemon=True)
            launched_wall = utcnow()
            started = time.perf_counter()
            assert store.launch(db.session.get(Campaign, campaign_id), staff) == []
            probe.start()
            deadline = started + timeout_s
            status = "running"
            while time.perf_counter() < deadline:
                db.session.remove()
                status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
                if status == "finished":
                    break
                time.sleep(0.5)
            stop.set()
            probe.join(30)
            client.close()
        if external:
            client_floors.append(client_floor(sink_url, 2, floor_requests))
    db.session.remove()
    last = db.session.scalar(
        select(func.max(Delivery.updated_at)).join(Notification).where(Notification.campaign_id == campaign_id)
    )
    done = db.session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.campaign_id == campaign_id, Notification.inbox_at.is_not(None))
    )
    sent = dict(
        db.session.execute(
            select(Delivery.channel, func.count())
            .join(Notification)
            .where(Notification.campaign_id == campaign_id, Delivery.status.in_(("DELIVERED", "DISPATCHED")))
            .group_by(Delivery.channel)
        ).all()
    )
    unsent = db.session.scalar(
        select(func.count())
        .select_from(Delivery)
        .join(Notification)
        .where(Notification.campaign_id == campaign_id, Delivery.status.in_((PENDING, SENDING)))
    )
    seconds = (last - launched_wall).total_seconds() if last else float("inf")
    rate = done / seconds if seconds else 0.0
    floor = sum(client_floors) / len(client_floors) if client_floors else float("nan")
    floor_text = (
        f"raw client floor (Herald's pycurl client alone, 2 processes x {CONCURRENCY} in flight, same sink) "
        f"{' / '.join(f'{f:.0f}' for f in client_floors)} req/s before / after, ratio to its mean {rate / floor:.2f}; "
        if client_floors
        else ""
    )
    dash = summary(latencies) if latencies else "no samples"
    p99 = percentile([v * 1000 for v in latencies], 99) if latencies else float("nan")
    label = " + ".join(c if c == "in_app" else f"fake HTTP {c}" for c in channels)
    print(
        f"\n[bench] campaign fan-out on {backend}: {recipients} recipients (seeded in {seed_seconds:.1f} s), "
        f"{label}, 2 workers: status {status}, {done} in inboxes, sent {sent}, {unsent} unsent; "
        f"launch -> last delivery {seconds:.1f} s = {rate:.0f} recipients/s end to end; "
        f"raw bulk insert of the same rows {ceiling:.0f} recipients/s (sample {min(recipients, ceiling_sample)}), "
        f"ratio {rate / ceiling:.2f}; {floor_text}dashboard GET /console/ during fan-out ({len(latencies)} samples): {dash} "
        f"({machine()})"
    )
    if prototype:
        print(
            f"[bench]   floors in the same run, one process each (sample {min(recipients, ceiling_sample)}): "
            f"lean prototype {prototype['lean']:.0f} recipients/s, bare COPY of the same rows {prototype['copy']:.0f}/s; "
            f"Herald (2 workers) / lean {rate / prototype['lean']:.2f}, per worker {rate / 2 / prototype['lean']:.2f}; "
            f"Herald / COPY {rate / prototype['copy']:.2f}; lean / COPY {prototype['lean'] / prototype['copy']:.2f}"
        )
    return {
        "status": status,
        "done": done,
        "sent": sent,
        "rate": rate,
        "ceiling": ceiling,
        "p99_ms": p99,
        "floor": floor,
        **prototype,
    }


def test_campaign_fanout_smoke(bench_env):
    result = campaign_benchmark(bench_env, recipients=5000, timeout_s=25, ceiling_sample=5000)
    assert result["status"] == "finished"
    assert result["done"] == 5000 and result["sent"] == {"in_app": 5000, "email": 5000}


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_campaign_fanout_in_app_only(bench_env):
    """The same fan-out without a provider round trip: what Herald's own batch work costs."""
    recipients = int(os.environ.get("HERALD_BENCH_RECIPIENTS", "200000"))
    result = campaign_benchmark(
        bench_env, recipients=recipients, timeout_s=1800, ceiling_sample=100_000, channels=("in_app",)
    )
    assert result["done"] > 0


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_campaign_fanout_million(bench_env):
    """A run that cannot finish in ``HERALD_BENCH_FANOUT_SECONDS`` (default 40 min) reports the rate of what it did."""
    recipients = int(os.environ.get("HERALD_BENCH_RECIPIENTS", "1000000"))
    seconds = float(os.environ.get("HERALD_BENCH_FANOUT_SECONDS", "2400"))
    result = campaign_benchmark(
        bench_env, recipients=recipients, timeout_s=seconds, ceiling_sample=100_000, floor_requests=100_000
    )
    assert result["done"] > 0
