"""The dashboard's database counts: exact while cheap, from a shared Redis snapshot refreshed by a worker once not."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from rq import Queue

from app.console import stats
from app.console.stats import DatabaseCounts, snapshot_action
from app.models.types import utcnow
from app.redis_client import get_redis
from tests.factories import make_recipient, make_staff
from tests.integration.test_console_auth import EMAIL, PASSWORD, by_testid, sign_in

NOW = utcnow()


@pytest.fixture
def admin(app):
    with app.app_context():
        make_staff(email=EMAIL, password=PASSWORD)


def snapshot(took: float, age: float, recipients: int = 7) -> DatabaseCounts:
    return DatabaseCounts(recipients, 0, stats.complete_status_counts({}), NOW - timedelta(seconds=age), took)


def test_cheap_counts_are_made_afresh_and_costly_ones_read_from_the_snapshot():
    assert snapshot_action(None, NOW) == "count"
    assert snapshot_action(snapshot(took=0.001, age=0), NOW) == "count"
    assert snapshot_action(snapshot(took=1.2, age=1), NOW) == "use"
    assert snapshot_action(snapshot(took=1.2, age=stats.REFRESH_SECONDS), NOW) == "refresh"


def test_snapshot_survives_its_json_round_trip():
    counts = snapshot(took=0.5, age=3)
    assert DatabaseCounts.from_json(counts.to_json()) == counts


def test_a_costly_snapshot_is_shown_at_once_and_refreshed_by_a_worker(app, client, admin, run_jobs):
    with app.app_context():
        for _ in range(3):
            make_recipient()
        stats._store(snapshot(took=2.0, age=60, recipients=99))
    sign_in(client)

    html = client.get("/console/").get_data(as_text=True)
    assert by_testid(html, "count-recipients") == "99"  # the old snapshot, without waiting for a count
    with app.app_context():  # the request asked the workers for a refresh and did not count itself
        assert [job.func_name for job in Queue(stats.REFRESH_QUEUE, connection=get_redis()).jobs] == [stats.REFRESH_JOB]
        assert stats._read_snapshot().recipients == 99

    run_jobs()
    with app.app_context():
        refreshed = stats._read_snapshot()
    assert refreshed.recipients == 3 and (utcnow() - refreshed.as_of) < timedelta(seconds=10)
    # Counting 3 rows was cheap: from now on every request counts afresh.
    with app.app_context():
        make_recipient()
    assert by_testid(client.get("/console/").get_data(as_text=True), "count-recipients") == "4"


def test_only_one_refresh_is_queued_at_a_time(app, run_jobs):
    with app.app_context():
        queue = Queue(stats.REFRESH_QUEUE, connection=get_redis())
        assert [stats.request_refresh() for _ in range(5)] == [True, False, False, False, False]
        assert [job.func_name for job in queue.jobs] == [stats.REFRESH_JOB]
    run_jobs()
    with app.app_context():
        assert queue.count == 0 and stats._read_snapshot() is not None
        assert stats.request_refresh() is True  # the finished refresh released its lock


def test_a_fresh_costly_snapshot_is_used_as_it_is(app, client, admin):
    with app.app_context():
        make_recipient()
        stats._store(replace(snapshot(took=2.0, age=0, recipients=42), as_of=utcnow()))
    sign_in(client)
    assert by_testid(client.get("/console/").get_data(as_text=True), "count-recipients") == "42"
