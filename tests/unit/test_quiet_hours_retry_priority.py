import random
from datetime import UTC, datetime, time

import pytest

from app.delivery.priority import effective_priority
from app.delivery.quiet_hours import is_quiet, quiet_until
from app.delivery.retry import MAX_ATTEMPTS, next_retry_delay


@pytest.mark.parametrize(
    ("local", "quiet"), [(time(21, 59), False), (time(22, 0), True), (time(3, 0), True), (time(7, 0), False)]
)
def test_window_spanning_midnight(local, quiet):
    assert is_quiet(local, time(22, 0), time(7, 0)) is quiet


def test_same_day_window_and_empty_window():
    assert is_quiet(time(13, 0), time(12, 0), time(14, 0))
    assert not is_quiet(time(14, 0), time(12, 0), time(14, 0))
    assert not is_quiet(time(3, 0), None, None)
    assert not is_quiet(time(3, 0), time(5, 0), time(5, 0))


def test_quiet_until_follows_local_clock_across_dst_change():
    # US DST starts 2026-03-08 02:00 local. At 23:30 PST on the 7th the 07:00 end is PDT (UTC-7).
    now = datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert quiet_until(now, "America/Los_Angeles", time(22, 0), time(7, 0)) == datetime(2026, 3, 8, 14, 0, tzinfo=UTC)


def test_missing_time_zone_uses_utc():
    now = datetime(2026, 3, 8, 23, 0, tzinfo=UTC)
    assert quiet_until(now, None, time(22, 0), time(7, 0)) == datetime(2026, 3, 9, 7, 0, tzinfo=UTC)
    assert quiet_until(now, "Not/AZone", time(22, 0), time(7, 0)) == datetime(2026, 3, 9, 7, 0, tzinfo=UTC)


def test_backoff_doubles_with_bounded_jitter_then_gives_up():
    rng = random.Random(7)
    delays = [next_retry_delay(attempt, rng) for attempt in range(1, MAX_ATTEMPTS)]
    for delay, base in zip(delays, (1, 2, 4, 8, 16), strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert next_retry_delay(MAX_ATTEMPTS, rng) is None


def test_jitter_spreads_simultaneous_failures():
    assert len({next_retry_delay(3) for _ in range(50)}) > 10


def test_security_is_at_least_high_priority():
    assert effective_priority("security", "low") == "high"
    assert effective_priority("security", "critical") == "critical"
    assert effective_priority("marketing", "low") == "low"
