"""Web push throughput of one worker's adapter: pooled connections vs a new connection per message.

The receiver runs in its own process (``python -m tests.peers.webpush``) and
only counts: decryption of every payload is proven by
tests/integration/test_webpush.py. What is timed is everything one worker
does per subscription -- send-time SSRF check, RFC 8291 encryption, the
cached VAPID header, breaker and health counters in Redis, the HTTP POST --
through ``app.pipeline.sending.send_window`` with the adapter's ``concurrent_sends``
requests in flight, exactly as a campaign or rule batch sends (hand-off notes and bulk recording included).
`make bench` runs 10,000 subscriptions per mode; the default run a smoke size.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest

from app.channels import DeviceTarget, Message, Outcome, close_all
from app.channels.http import FastClient
from app.channels.web_push import WebPushChannel
from app.pipeline.sending import send_window
from tests.bench.harness import machine
from tests.conftest import PROJECT_ROOT, free_port, wait_for_port
from tests.peers.webpush import Subscription


def receiver():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.peers.webpush", str(port)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    wait_for_port(port, process=process)
    return process, f"http://127.0.0.1:{port}"


def messages(base: str, count: int) -> list[Message]:
    result = []
    for n in range(count):
        keys = Subscription(f"{base}/push/{n}").to_json()["keys"]
        device = DeviceTarget(n, "web", f"{base}/push/{n}", keys["p256dh"], keys["auth"])
        result.append(
            Message(
                delivery_id=n,
                recipient_id=n,
                notification_id=f"n{n}",
                channel="web_push",
                idempotency_key=f"herald-n{n}-web_push",
                recipient_external_id=f"user-{n}",
                notification_type="marketing",
                category="promotions",
                priority="normal",
                content={"title": "Spring sale", "body": f"Up to 50% off, subscriber {n}"},
                data={"url": "https://shop.example/sale"},
                devices=(device,),
            )
        )
    return result


def run(adapter: WebPushChannel, batch: list[Message]) -> float:
    recorded: list = []
    pairs = [(SimpleNamespace(id=m.delivery_id), m) for m in batch]
    started = time.perf_counter()
    send_window(adapter, "web_push", pairs, datetime.now(UTC), recorded.extend, time.monotonic() + 600)
    elapsed = time.perf_counter() - started
    results = [(item.id, result) for item, result in recorded]
    failures = Counter(f"{r.error_code}: {r.detail}"[:120] for _d, r in results if r.outcome is not Outcome.DISPATCHED)
    # Back-to-back full runs can exhaust loopback's ephemeral ports (10,000 fresh connections a run, in TIME_WAIT
    # for a minute): that shows here as connect errors.
    assert not failures, failures.most_common(3)
    return len(batch) / elapsed


def stats(base: str) -> dict:
    return httpx.get(f"{base}/stats").json()


def webpush_benchmark(app, count: int) -> dict:
    app.config["WEB_PUSH_PRIVATE_HOSTS"] = frozenset({"127.0.0.1"})
    close_all()
    process, base = receiver()
    try:
        batch = messages(base, count)
        pooled = WebPushChannel(app.config)
        run(pooled, batch[:50])  # warm up: DNS check cache, VAPID header, first connection
        before = stats(base)
        pooled_rate = run(pooled, batch)
        pooled_connections = stats(base)["connections"] - before["connections"]
        pooled.close()

        fresh = WebPushChannel(app.config)
        fresh.client = FastClient(app.config, limit=WebPushChannel.concurrent_sends, reuse=False)
        before = stats(base)
        fresh_rate = run(fresh, batch)
        fresh_connections = stats(base)["connections"] - before["connections"]
        fresh.close()
        assert stats(base)["count"] == 2 * count + 50
    finally:
        process.terminate()
        process.wait(10)
        app.config["WEB_PUSH_PRIVATE_HOSTS"] = frozenset()
    print(
        f"\n[bench] web push, one worker, {count} subscriptions: pooled client {pooled_rate:.0f} sends/s "
        f"over {pooled_connections} connection(s); new connection per message {fresh_rate:.0f} sends/s "
        f"over {fresh_connections} connections ({pooled_rate / fresh_rate:.2f}x) ({machine()})"
    )
    return {
        "pooled": pooled_rate,
        "fresh": fresh_rate,
        "pooled_connections": pooled_connections,
        "fresh_connections": fresh_connections,
    }


def test_webpush_throughput_smoke(app):
    result = webpush_benchmark(app, 300)
    # Throughput at this size is noise; what must hold is that the pooled client reuses its connections.
    assert result["pooled_connections"] <= WebPushChannel.concurrent_sends and result["fresh_connections"] >= 290


@pytest.mark.bench
def test_webpush_throughput_full(app):
    webpush_benchmark(app, 10_000)
