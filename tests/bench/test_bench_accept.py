"""The accept path against its floor (issue 16): `POST /v1/notifications` on Herald's real web and on a minimal
Flask app (tests/bench/floor_app.py: insert + commit + RQ enqueue) served the same way.

Both servers run side by side (gunicorn -c app/gunicorn_config.py, gevent, 2 workers); one load generator
(harness.raw_load, 32 keep-alive connections) loads them in alternating rounds, so a neighbour's load on the
shared machine falls on both. Every Herald request carries its own Idempotency-Key (a reservation row beside the
notification), an API key that is rate limited and scope checked, and the validation of the whole schema.
The aim: Herald >= 0.8 of the floor's req/s on PostgreSQL, p99 < 50 ms. `make bench` runs the full size;
the default run a smoke size.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from app.api.keys import create_api_key
from app.extensions import db
from app.models import IdempotencyKey, Notification
from tests.bench.harness import gunicorn, http_post, machine, percentile, raw_load
from tests.factories import make_recipient

CONCURRENCY = 32
# HERALD_BENCH_ACCEPT_KEYS=0 sends Herald's requests without an Idempotency-Key (no reservation row).
IDEMPOTENCY_KEYS = os.environ.get("HERALD_BENCH_ACCEPT_KEYS", "1") != "0"


def requests_for(port: int, key: str, count: int) -> list[bytes]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    built = []
    for n in range(count):
        body = {
            "user_id": "bench-user",
            "type": "transactional",
            "title": "Receipt",
            "body": f"Order {n}",
            "channels": ["in_app", "email"],
        }
        idempotency = {"Idempotency-Key": f"bench-{uuid.uuid4().hex}"} if IDEMPOTENCY_KEYS else {}
        built.append(http_post("/v1/notifications", port, {**headers, **idempotency}, json.dumps(body).encode()))
    return built


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def accept_vs_floor(bench_env, per_round: int, rounds: int, connections: int = CONCURRENCY) -> dict:
    recipient = make_recipient(external_id="bench-user")
    key = create_api_key("bench", rate_limit="1000000000/minute")[1]
    floor_env = {**bench_env, "FLOOR_RECIPIENT_ID": str(recipient.id)}
    totals = {
        name: {"seconds": 0.0, "accepted": 0, "failed": 0, "latencies": [], "cpu": [], "codes": Counter()}
        for name in ("h", "f")
    }
    with gunicorn(bench_env) as herald, gunicorn(floor_env, target="tests.bench.floor_app:app") as floor:
        ports = {"h": port_of(herald), "f": port_of(floor)}
        for port in ports.values():  # warm up: imports, pools, compiled statements
            raw_load(port, requests_for(port, key, 300), connections)
        for round_number in range(rounds * 2):
            name = "hffh"[round_number % 4]  # ABBA: a drift in the background load falls on both
            result = raw_load(ports[name], requests_for(ports[name], key, per_round), connections)
            total = totals[name]
            total["seconds"] += result["seconds"]
            total["accepted"] += result["codes"].count(202)
            total["failed"] += len(result["codes"]) - result["codes"].count(202)
            total["codes"].update(result["codes"])
            total["latencies"] += result["latencies"]
            total["cpu"].append(result["client_cpu"])
            print(
                f"\n[bench] round {round_number + 1} {'Herald' if name == 'h' else 'floor'}: "
                f"{result['codes'].count(202) / result['seconds']:,.0f} req/s",
                end="",
            )
    for name, total in totals.items():
        # A loaded machine may drop a connection now and then; counted, not hidden (as in the other benchmarks).
        assert total["failed"] <= rounds * per_round * 0.001, (name, dict(total["codes"]))
        total["rps"] = total["accepted"] / total["seconds"]
        total["p50"] = percentile(total["latencies"], 50) * 1000
        total["p99"] = percentile(total["latencies"], 99) * 1000
    stored = db.session.scalar(select(func.count()).select_from(Notification))
    assert stored == totals["h"]["accepted"] + totals["f"]["accepted"] + 600
    keys = db.session.scalar(select(func.count()).select_from(IdempotencyKey))
    assert keys == (totals["h"]["accepted"] + 300 if IDEMPOTENCY_KEYS else 0)
    herald, floor = totals["h"], totals["f"]
    ratio = herald["rps"] / floor["rps"]
    load = os.getloadavg()[0]
    print(
        f"\n[bench] accept vs floor on {db.engine.dialect.name}, {connections} connections, "
        f"{'an' if IDEMPOTENCY_KEYS else 'no'} Idempotency-Key per Herald request, {rounds} alternating "
        f"rounds of {per_round} each: Herald {herald['rps']:,.0f} req/s (p50 {herald['p50']:.1f} ms, p99 "
        f"{herald['p99']:.1f} ms), floor {floor['rps']:,.0f} req/s (p50 {floor['p50']:.1f} ms, p99 "
        f"{floor['p99']:.1f} ms): ratio {ratio:.2f}; load generator CPU {max(herald['cpu'] + floor['cpu']):.0%} "
        f"of one core at most; load average {load:.1f} ({machine()})"
    )
    return {"ratio": ratio, "herald": herald, "floor": floor}


def test_accept_vs_floor_smoke(bench_env):
    # Small rounds on a shared machine: noisy, so the smoke run asks only that the comparison runs and stays sane.
    # 8 connections, not 32: with 32, beside the rest of the suite on the same PostgreSQL, CI once got 21 of 600
    # answers 503 "database unavailable" (cause not pinned down; the full run keeps 32).
    assert accept_vs_floor(bench_env, per_round=300, rounds=2, connections=8)["ratio"] > 0.3


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_accept_vs_floor_full(bench_env):
    per_round = int(os.environ.get("HERALD_BENCH_ACCEPT_ROUND", "5000"))
    result = accept_vs_floor(bench_env, per_round=per_round, rounds=4)
    assert result["ratio"] >= 0.8
    assert result["herald"]["p99"] < 50
