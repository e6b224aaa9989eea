"""Benchmarks of the delivery core. `make bench` runs the full sizes; the default run keeps a smoke size.

- accept path: POST /v1/notifications under gunicorn (gevent, 2 workers), req/s and latency;
- transactional latency: POST -> in-app event published, while a backlog of low-priority
  notifications waits in the queues and two workers (one dedicated to critical/high) drain it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest
from rq import Queue
from sqlalchemy import insert

from app.api.keys import create_api_key
from app.extensions import db
from app.models import Notification
from app.models.types import utcnow
from app.realtime.publish import user_channel
from app.redis_client import get_redis
from tests.bench.harness import gunicorn, machine, post_load, summary, workers
from tests.factories import make_recipient


def backend() -> str:
    return db.engine.dialect.name


def accept_benchmark(bench_env, requests: int, concurrency: int) -> dict:
    make_recipient(external_id="bench-user")
    key = create_api_key("bench", rate_limit="1000000000/minute")[1]
    bodies = [
        {
            "user_id": "bench-user",
            "type": "transactional",
            "title": "Receipt",
            "body": f"Order {n}",
            "channels": ["in_app", "email"],
            "idempotency_key": f"bench-{uuid.uuid4().hex}",
        }
        for n in range(requests)
    ]
    with gunicorn(bench_env, workers=2) as base:
        post_load(f"{base}/v1/notifications", {"Authorization": f"Bearer {key}"}, bodies[:50], 8)  # warm up
        seconds, latencies, codes = post_load(
            f"{base}/v1/notifications", {"Authorization": f"Bearer {key}"}, bodies[50:], concurrency
        )
    accepted = codes.count(202)
    failed = len(codes) - accepted
    assert failed <= len(codes) * 0.001, {c: codes.count(c) for c in set(codes)}
    result = {"rps": accepted / seconds, "latency": summary(latencies)}
    print(
        f"\n[bench] accept path on {backend()}: {accepted} accepted POSTs ({failed} failed), concurrency {concurrency}: "
        f"{result['rps']:.0f} req/s, {result['latency']} ({machine()})"
    )
    return result


def seed_low_backlog(count: int) -> None:
    """`count` low-priority marketing notifications, their routing jobs enqueued in pipelined batches."""
    recipients = [make_recipient(external_id=f"bulk-{n}").id for n in range(50)]
    now = utcnow()
    ids = [uuid.uuid4().hex for _ in range(count)]
    rows = [
        {
            "id": nid,
            "recipient_id": recipients[n % len(recipients)],
            "type": "marketing",
            "category": "digest",
            "priority": "low",
            "title": "Digest",
            "body": "Your weekly digest",
            "data": {},
            "channels": ["in_app"],
            "status": "accepted",
            "created_at": now,
        }
        for n, nid in enumerate(ids)
    ]
    for start in range(0, count, 5000):
        db.session.execute(insert(Notification), rows[start : start + 5000])
    db.session.commit()
    queue = Queue("low", connection=get_redis())
    for start in range(0, count, 5000):
        with get_redis().pipeline() as pipe:
            queue.enqueue_many(
                [
                    Queue.prepare_data("jobs.delivery.route_notification", (nid,), timeout=300)
                    for nid in ids[start : start + 5000]
                ],
                pipeline=pipe,
            )
            pipe.execute()


def latency_benchmark(bench_env, backlog: int, samples: int) -> dict:
    seed_low_backlog(backlog)
    recipient = make_recipient(external_id="vip")
    key = create_api_key("latency", rate_limit="1000000000/minute")[1]
    low = Queue("low", connection=get_redis())
    assert low.count == backlog
    received: dict[str, float] = {}
    pubsub = get_redis().pubsub()
    pubsub.subscribe(user_channel(recipient.id))

    stop = threading.Event()

    def listen():
        while not stop.is_set():
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if message and message["type"] == "message":
                received[json.loads(message["data"])["id"]] = time.perf_counter()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    latencies: dict[str, list[float]] = {"normal": [], "high": []}
    with (
        gunicorn(bench_env, workers=1) as base,
        workers(bench_env, [["critical", "high"], ["critical", "high", "normal", "low"]]),
    ):
        client = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        for n in range(samples):
            priority = "high" if n % 2 else "normal"
            started = time.perf_counter()
            response = client.post(
                f"{base}/v1/notifications",
                json={
                    "user_id": "vip",
                    "type": "transactional",
                    "priority": priority,
                    "title": "Code",
                    "body": f"{n:06d}",
                    "channels": ["in_app"],
                },
            )
            notification_id = response.json()["id"]
            while notification_id not in received and time.perf_counter() - started < 10:
                time.sleep(0.001)
            assert notification_id in received, f"notification {n} was not delivered within 10 s"
            latencies[priority].append(received[notification_id] - started)
            time.sleep(0.02)
        remaining = low.count
    stop.set()
    listener.join(5)
    pubsub.close()
    assert remaining > 0, "the low-priority backlog drained before the measurement ended; raise the backlog"
    for priority, values in latencies.items():
        print(
            f"\n[bench] transactional {priority} POST->in-app event on {backend()} with {backlog} low queued "
            f"({remaining} still queued at the end): {summary(values)} ({machine()})"
        )
    return latencies


def test_accept_path_smoke(bench_env):
    assert accept_benchmark(bench_env, requests=300, concurrency=16)["rps"] > 20


def test_transactional_latency_smoke(bench_env):
    latency_benchmark(bench_env, backlog=3000, samples=10)


@pytest.mark.bench
def test_accept_path_full(bench_env):
    accept_benchmark(bench_env, requests=20_000, concurrency=32)


@pytest.mark.bench
def test_transactional_latency_full(bench_env):
    latency_benchmark(bench_env, backlog=100_000, samples=200)
