"""Bulk accept vs single accepts: N notifications as N POST /v1/notifications, then as N/1000 bulk calls.

Both against the same gunicorn (gevent, 2 workers) and database, each notification with its own idempotency
key, the singles with 16 keep-alive connections in flight (the accept benchmark's load generator), the bulk
calls two at a time. What is compared is the wall time per accepted notification; the aim (issue 17) is bulk
at least 5× faster at full size. `make bench` runs 10,000; the default run a smoke size.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from app.api.keys import create_api_key
from app.extensions import db
from app.models import Notification
from tests.bench.harness import gunicorn, machine, post_load
from tests.factories import make_recipient

USERS = 50


def item(n: int) -> dict:
    return {
        "user_id": f"bulk-user-{n % USERS}",
        "type": "transactional",
        "category": "receipts",
        "title": "Receipt",
        "body": f"Order {n}",
        "channels": ["in_app", "email"],
        "idempotency_key": f"bench-{uuid.uuid4().hex}",
    }


def bulk_benchmark(bench_env, count: int) -> dict:
    for n in range(USERS):
        make_recipient(external_id=f"bulk-user-{n}", email=f"u{n}@example.com")
    key = create_api_key("bench", rate_limit="1000000000/minute")[1]
    headers = {"Authorization": f"Bearer {key}"}
    singles = [item(n) for n in range(count)]
    calls = [{"items": [item(n) for n in range(start, min(start + 1000, count))]} for start in range(0, count, 1000)]
    with gunicorn(bench_env, workers=2) as base:
        post_load(f"{base}/v1/notifications", headers, [item(n) for n in range(50)], 8)  # warm up both paths
        post_load(f"{base}/v1/notifications/bulk", headers, [{"items": [item(n) for n in range(100)]}], 1)
        single_s, _lat, single_codes = post_load(f"{base}/v1/notifications", headers, singles, 16)
        bulk_s, bulk_lat, bulk_codes = post_load(f"{base}/v1/notifications/bulk", headers, calls, 2)
    accepted = single_codes.count(202)
    # As in the accept benchmark: a loaded machine may drop a connection now and then; counted, not hidden.
    assert len(single_codes) - accepted <= count * 0.001, {c: single_codes.count(c) for c in set(single_codes)}
    assert set(bulk_codes) == {202}, set(bulk_codes)
    stored = db.session.scalar(select(func.count()).select_from(Notification))
    assert stored == accepted + count + 150
    result = {"single_per_s": accepted / single_s, "bulk_per_s": count / bulk_s}
    result["ratio"] = result["bulk_per_s"] / result["single_per_s"]
    print(
        f"\n[bench] {count} notifications on {db.engine.dialect.name}: single POSTs {result['single_per_s']:,.0f}/s "
        f"({single_s:.1f} s), bulk calls of 1,000 {result['bulk_per_s']:,.0f}/s ({bulk_s:.2f} s, "
        f"{max(bulk_lat) * 1000:.0f} ms the slowest call): {result['ratio']:.1f}× per notification ({machine()})"
    )
    return result


def test_bulk_accept_smoke(bench_env):
    # At 300 the bulk side is one call: noisy, so the smoke run asks only for a clear win.
    assert bulk_benchmark(bench_env, 300)["ratio"] > 2


@pytest.mark.bench
def test_bulk_accept_full(bench_env):
    assert bulk_benchmark(bench_env, 10_000)["ratio"] >= 5
