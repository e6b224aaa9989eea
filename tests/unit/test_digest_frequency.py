"""When a digest closes for a recipient, by the frequency they chose for its category (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.workflows.digest_frequency import closes_at

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # 13:00 in Lisbon, 21:00 in Tokyo, 08:00 in New York


@pytest.mark.parametrize("frequency", [None, "default"])
def test_no_choice_keeps_the_workflows_own_window(frequency):
    assert closes_at(frequency, False, "Europe/Lisbon", 600, NOW) == NOW + timedelta(minutes=10)


def test_off_does_not_hold_at_all():
    assert closes_at("off", False, "Europe/Lisbon", 600, NOW) is None


def test_hourly_is_at_least_an_hour_and_never_shortens_a_longer_window():
    assert closes_at("hourly", False, None, 60, NOW) == NOW + timedelta(hours=1)
    assert closes_at("hourly", False, None, 7200, NOW) == NOW + timedelta(hours=2)


def test_daily_closes_at_the_next_0900_in_the_recipients_zone():
    assert closes_at("daily", False, "America/New_York", 60, NOW) == datetime(2026, 6, 1, 13, 0, tzinfo=UTC)
    assert closes_at("daily", False, "Asia/Tokyo", 60, NOW) == datetime(2026, 6, 2, 0, 0, tzinfo=UTC)
    assert closes_at("daily", False, None, 60, NOW) == datetime(2026, 6, 2, 9, 0, tzinfo=UTC)  # UTC without a zone


def test_daily_never_shortens_a_workflow_window_that_ends_later():
    # New York's 09:00 is an hour away; the workflow's two hours win.
    assert closes_at("daily", False, "America/New_York", 7200, NOW) == NOW + timedelta(hours=2)


@pytest.mark.parametrize("frequency", ["off", "hourly", "daily"])
def test_security_notices_ignore_the_choice(frequency):
    assert closes_at(frequency, True, "Asia/Tokyo", 600, NOW) == NOW + timedelta(minutes=10)
