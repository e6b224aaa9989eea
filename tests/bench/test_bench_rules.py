"""Daily-rule benchmark: one evaluation pass over many recipients in 30 zones, then sending to all eligible.

Full size (`make bench`): 8,000,000 recipients on PostgreSQL, 1,000,000 on SQLite; the default run keeps a
smoke size. 5% are below their threshold. Printed: the bare eligibility SQL alone (the floor), the claim pass
(the evaluation) and a second pass that finds everyone claimed, the send pass (notifications + in-app + push
jobs handed over) and the push dispatch to a local fake provider over HTTP.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select, text

from app.channels import Outcome, Result, base
from app.channels.base import _REGISTRY, Channel
from app.channels.http import FastClient
from app.channels.push import MobilePush
from app.extensions import db
from app.models import Delivery, RuleSend
from app.models.types import utcnow
from app.rules import windows
from app.rules.evaluate import count_eligible, evaluate_rule, present_zones
from app.rules.send import send_claims
from tests.bench.harness import machine
from tests.conftest import free_port, wait_for_port
from tests.integration.test_rules import make_rule

ZONES = [
    "Pacific/Pago_Pago",
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Halifax",
    "America/St_Johns",
    "America/Sao_Paulo",
    "Atlantic/South_Georgia",
    "Atlantic/Azores",
    "Europe/Lisbon",
    "Europe/Paris",
    "Europe/Athens",
    "Europe/Moscow",
    "Asia/Tehran",
    "Asia/Dubai",
    "Asia/Kabul",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Dhaka",
    "Asia/Bangkok",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Adelaide",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Pacific/Kiritimati",
]

FAKE_PROVIDER = """
import asyncio, sys
RESPONSE = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 2\\r\\n\\r\\n{}"
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            length = [int(l.split(b":")[1]) for l in head.split(b"\\r\\n") if l.lower().startswith(b"content-length:")]
            if length and length[0]:
                await reader.readexactly(length[0])
            writer.write(RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


class FakePush(MobilePush):
    """Stands in for FCM: one POST per device to a local server, carrying the idempotency key, on the worker's
    HTTP loop with as many in flight as the real mobile push adapter (whose FCM client does the same)."""

    url = ""

    def __init__(self, app_config):
        Channel.__init__(self, app_config)
        self.clients = {}  # no APNs/FCM clients
        self.client = FastClient(app_config, limit=self.concurrent_sends)

    async def send_async(self, message):
        for device in message.devices:
            response = await self.client.post(
                self.url,
                json_body={"token": device.token, "title": message.content.get("title")},
                headers={"Idempotency-Key": message.idempotency_key},
            )
            if response.status_code != 200:
                return Result(Outcome.TRANSIENT, "fake-push", error_code=f"http_{response.status_code}")
        return Result(Outcome.DISPATCHED, "fake-push", "1")


def seed(count: int) -> None:
    """Set-based: 1 in 20 below threshold (and with an Android device), zones round-robin."""
    zones = ", ".join(f"'{z}'" for z in ZONES)
    if db.engine.dialect.name == "postgresql":
        db.session.execute(
            text(f"""
            INSERT INTO recipients (external_id, timezone, locale, attributes, hard_stop, created_at, updated_at)
            SELECT 'b-' || g, (ARRAY[{zones}])[1 + g % 30], 'en',
                   jsonb_build_object('balance', CASE WHEN g % 20 = 0 THEN 12.5 ELSE 500 END, 'low_balance_threshold', 50),
                   false, now(), now()
            FROM generate_series(1, :n) AS g"""),
            {"n": count},
        )
        db.session.execute(
            text("""
            INSERT INTO devices (recipient_id, platform, token, active, last_seen_at, created_at)
            SELECT id, 'android', 'tok-' || id, true, now(), now() FROM recipients WHERE id % 20 = 0""")
        )
    else:
        db.session.execute(
            text(f"""
            WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n),
                 z(i, name) AS (SELECT * FROM (VALUES {", ".join(f"({i}, '{name}')" for i, name in enumerate(ZONES))}))
            INSERT INTO recipients (external_id, timezone, locale, attributes, hard_stop, created_at, updated_at)
            SELECT 'b-' || g, (SELECT name FROM z WHERE i = g % 30), 'en',
                   json_object('balance', CASE WHEN g % 20 = 0 THEN 12.5 ELSE 500 END, 'low_balance_threshold', 50),
                   0, datetime('now'), datetime('now')
            FROM s"""),
            {"n": count},
        )
        db.session.execute(
            text("""
            INSERT INTO devices (recipient_id, platform, token, active, last_seen_at, created_at)
            SELECT id, 'android', 'tok-' || id, 1, datetime('now'), datetime('now') FROM recipients WHERE id % 20 = 0""")
        )
    db.session.commit()
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def rules_benchmark(count: int, run_jobs, monkeypatch) -> dict:
    started = time.perf_counter()
    seed(count)
    seeded = time.perf_counter() - started
    rule = make_rule(channels=["in_app", "push"])
    # The real clock: the push jobs re-check each recipient's window against it when they run.
    now = utcnow()
    backend = db.engine.dialect.name

    started = time.perf_counter()
    the_plan = windows.plan(now, present_zones(), rule.window_start, rule.window_end)
    zones_seconds = time.perf_counter() - started
    started = time.perf_counter()
    eligible = sum(count_eligible(rule, t, the_plan.unknown_zones, now) for t in the_plan.targets)
    floor = time.perf_counter() - started

    started = time.perf_counter()
    claimed = evaluate_rule(rule, now, send=False).claimed
    evaluation = time.perf_counter() - started
    assert claimed == eligible > 0

    started = time.perf_counter()
    assert evaluate_rule(rule, now, send=False).claimed == 0
    again = time.perf_counter() - started

    gc.collect()  # a full collection the seeding and evaluation left due would otherwise land in the send pass
    started, cpu = time.perf_counter(), time.process_time()
    sent = send_claims(rule, now)["sent"]
    send_seconds, send_cpu = time.perf_counter() - started, time.process_time() - cpu
    assert sent == eligible

    port = free_port()
    provider = subprocess.Popen([sys.executable, "-c", FAKE_PROVIDER, str(port)])
    try:
        wait_for_port(port)
        fake = type("FakePush", (FakePush,), {"url": f"http://127.0.0.1:{port}/v1/projects/bench/messages:send"})
        monkeypatch.setitem(_REGISTRY, "push", fake)
        monkeypatch.setattr(base, "_INSTANCES", {})
        fake.name = "push"
        started = time.perf_counter()
        run_jobs()
        dispatch_seconds = time.perf_counter() - started
        db.session.expire_all()
        pushed = db.session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.channel == "push", Delivery.status == "DISPATCHED")
        )
        assert pushed == eligible
    finally:
        provider.terminate()
        provider.wait(10)
    zones_in_window = sum(len(t.zones) for t in the_plan.targets)
    print(
        f"\n[bench] rules on {backend}: {count:,} recipients in 30 zones (seeded in {seeded:.1f} s), "
        f"{zones_in_window} zones inside 09-19 at {now:%H:%M} UTC, {eligible:,} eligible ({machine()})"
    )
    print(
        f"[bench]   distinct zones + plan {zones_seconds * 1000:.0f} ms; bare eligibility SQL (floor) {floor:.2f} s; "
        f"evaluation pass (select + claim) {evaluation:.2f} s; the next pass, all claimed {again:.2f} s"
    )
    print(
        f"[bench]   send pass (notifications + in-app + push jobs) {send_seconds:.2f} s = {eligible / send_seconds:,.0f}/s"
        f"; push dispatch to fake provider {dispatch_seconds:.2f} s = {eligible / dispatch_seconds:,.0f}/s"
    )
    print(f"[bench]   send pass Python CPU (this process) {send_cpu / eligible * 1e6:,.0f} µs per recipient")
    assert db.session.scalar(select(func.count()).select_from(RuleSend)) == eligible
    return {
        "eligible": eligible,
        "evaluation": evaluation,
        "again": again,
        "floor": floor,
        "send": send_seconds,
        "send_cpu": send_cpu,
        "dispatch": dispatch_seconds,
    }


def test_rules_evaluation_smoke(app, run_jobs, monkeypatch):
    rules_benchmark(20_000, run_jobs, monkeypatch)


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_rules_evaluation_full(app, run_jobs, monkeypatch):
    # HERALD_BENCH_RULES_SIZE runs a smaller full benchmark when the machine is busy.
    count = int(
        os.environ.get("HERALD_BENCH_RULES_SIZE")
        or (8_000_000 if db.engine.dialect.name == "postgresql" else 1_000_000)
    )
    result = rules_benchmark(count, run_jobs, monkeypatch)
    assert result["evaluation"] < 60 or db.engine.dialect.name != "postgresql"
