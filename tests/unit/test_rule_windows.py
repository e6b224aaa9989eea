"""Pure time-zone and window arithmetic of daily rules."""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from app.rules import windows
from app.rules.windows import EXPIRE, SEND, WAIT, period_start, plan, recheck

NINE, SEVEN = time(9), time(19)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone, *args) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def test_window_includes_its_start_and_excludes_its_end():
    assert windows.inside(time(9), NINE, SEVEN)
    assert not windows.inside(time(8, 59, 59), NINE, SEVEN)
    assert not windows.inside(time(19), NINE, SEVEN)


def test_plan_groups_zones_inside_the_window_by_their_local_date():
    result = plan(utc(2026, 6, 15, 22), ["Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Lisbon", None], NINE, SEVEN)
    assert [(t.local_date, t.zones, t.utc_fallback) for t in result.targets] == [
        (date(2026, 6, 15), ["Pacific/Pago_Pago"], False),
        (date(2026, 6, 16), ["Pacific/Kiritimati"], False),
    ]


def test_unknown_zone_names_count_as_no_zone_and_fall_back_to_utc():
    result = plan(utc(2026, 6, 15, 10), ["Not/AZone", ""], NINE, SEVEN)
    assert result.unknown_zones == ("", "Not/AZone")
    assert [(t.zones, t.utc_fallback) for t in result.targets] == [([], True)]


def test_spring_forward_day_in_los_angeles_opens_at_nine_pdt():
    nine = local("America/Los_Angeles", 2026, 3, 8, 9)
    assert nine == utc(2026, 3, 8, 16)  # PDT, UTC-7, on the day clocks jump
    assert plan(nine, ["America/Los_Angeles"], NINE, SEVEN).targets[0].zones == ["America/Los_Angeles"]
    assert all(t.zones == [] for t in plan(utc(2026, 3, 8, 15, 59), ["America/Los_Angeles"], NINE, SEVEN).targets)


def test_fall_back_day_in_los_angeles_opens_at_nine_pst():
    assert local("America/Los_Angeles", 2026, 11, 1, 9) == utc(2026, 11, 1, 17)
    assert all(t.zones == [] for t in plan(utc(2026, 11, 1, 16, 59), ["America/Los_Angeles"], NINE, SEVEN).targets)
    assert plan(utc(2026, 11, 1, 17), ["America/Los_Angeles"], NINE, SEVEN).targets[0].zones == ["America/Los_Angeles"]


def test_period_start_is_stable_for_every_n_days():
    assert period_start(date(2026, 6, 15), 1) == date(2026, 6, 15)
    starts = {period_start(date(2026, 6, d), 3) for d in range(1, 10)}
    assert len(starts) == 3


def test_country_policy_needs_every_zone_of_the_country_inside_the_window():
    singapore_nine = local("Asia/Singapore", 2026, 6, 15, 9)
    assert any("SG" in t.countries for t in plan(singapore_nine, [], NINE, SEVEN, policy="country").targets)
    new_york_ten = local("America/New_York", 2026, 6, 15, 10)
    assert all("US" not in t.countries for t in plan(new_york_ten, [], NINE, SEVEN, policy="country").targets)


def test_recheck_sends_inside_waits_before_and_expires_after_the_claimed_day():
    claimed = date(2026, 6, 15)
    assert recheck(local("Europe/Lisbon", 2026, 6, 15, 10), claimed, "Europe/Lisbon", None, NINE, SEVEN) == SEND
    assert recheck(local("Europe/Lisbon", 2026, 6, 15, 8), claimed, "Europe/Lisbon", None, NINE, SEVEN) == WAIT
    assert recheck(local("Europe/Lisbon", 2026, 6, 14, 12), claimed, "Europe/Lisbon", None, NINE, SEVEN) == WAIT
    assert recheck(local("Europe/Lisbon", 2026, 6, 15, 19), claimed, "Europe/Lisbon", None, NINE, SEVEN) == EXPIRE
    assert recheck(local("Europe/Lisbon", 2026, 6, 16, 10), claimed, "Europe/Lisbon", None, NINE, SEVEN) == EXPIRE


def test_recheck_uses_the_current_zone_not_the_one_at_claim_time():
    claimed = date(2026, 6, 15)
    singapore_nine = local("Asia/Singapore", 2026, 6, 15, 9)
    assert recheck(singapore_nine, claimed, "Asia/Singapore", None, NINE, SEVEN) == SEND
    assert recheck(singapore_nine, claimed, "America/New_York", None, NINE, SEVEN) == WAIT


def test_recheck_without_a_zone_uses_utc_or_the_country():
    claimed = date(2026, 6, 15)
    singapore_nine = local("Asia/Singapore", 2026, 6, 15, 9)  # 01:00 UTC
    assert recheck(singapore_nine, claimed, None, "SG", NINE, SEVEN) == WAIT
    assert recheck(singapore_nine, claimed, None, "SG", NINE, SEVEN, policy="country") == SEND


def test_idempotency_key_names_rule_recipient_and_local_date():
    assert windows.idempotency_key(3, 42, date(2026, 6, 15)) == "rule:3:42:2026-06-15"
