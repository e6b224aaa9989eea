"""The dashboard's database counts: exact while cheap, from a shared Redis snapshot refreshed in the background once not."""
from __future__ import annotations

import time

import pytest
from dataclasses import replace
from datetime import timedelta

from app.console import stats
from app.console.stats import DatabaseCounts, snapshot_action
from app.models.types import utcnow
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


def test_a_costly_snapshot_is_shown_at_once_and_refreshed_in_the_background(app, client, admin):
    with app.app_context():
        for _ in range(3):
            make_recipient()
        stats._store(snapshot(took=2.0, age=60, recipients=99))
    sign_in(client)

    html = client.get("/").get_data(as_text=True)
    assert by_testid(html, "count-recipients") == "99"  # the old snapshot, without waiting for a count

    deadline = time.monotonic() + 10
    with app.app_context():
        while time.monotonic() < deadline and stats._read_snapshot().recipients != 3:
            time.sleep(0.05)
        refreshed = stats._read_snapshot()
    assert refreshed.recipients == 3 and (utcnow() - refreshed.as_of) < timedelta(seconds=10)
    # Counting 3 rows was cheap: from now on every request counts afresh.
    with app.app_context():
        make_recipient()
    assert by_testid(client.get("/").get_data(as_text=True), "count-recipients") == "4"


def test_only_one_background_refresh_runs_at_a_time(app, monkeypatch):
    started = []
    monkeypatch.setattr(stats, "refresh_snapshot", lambda: started.append(1) or time.sleep(0.3))
    with app.test_request_context():
        for _ in range(5):
            stats._refresh_in_background()
        time.sleep(0.5)
        assert started == [1]
        stats._refresh_in_background()
        time.sleep(0.1)
    assert started == [1, 1]


def test_a_fresh_costly_snapshot_is_used_as_it_is(app, client, admin):
    with app.app_context():
        make_recipient()
        stats._store(replace(snapshot(took=2.0, age=0, recipients=42), as_of=utcnow()))
    sign_in(client)
    assert by_testid(client.get("/").get_data(as_text=True), "count-recipients") == "42"
