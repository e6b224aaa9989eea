"""Campaign planning decisions: local-time waves (DST, zones ahead of and behind UTC), throttling, launch checks."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from app.campaigns.planning import (
    Wave,
    batch_size,
    launch_problems,
    local_wave_time,
    missing_variants,
    plan_waves,
    progress_from_counters,
    spaced_run_times,
    split_sizes,
    template_channels,
)

NINE = time(9, 0)


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_zone_behind_utc_whose_local_time_is_still_ahead_goes_today():
    # 12:00 UTC = 07:00 in New York (EST): 09:00 local is 14:00 UTC today.
    assert local_wave_time(NINE, "America/New_York", utc(2026, 1, 15, 12, 0)) == utc(2026, 1, 15, 14, 0)


def test_zone_ahead_of_utc_whose_local_time_has_passed_goes_tomorrow():
    # 12:00 UTC = 21:00 in Tokyo: 09:00 local already passed, so tomorrow 09:00 JST = 00:00 UTC.
    assert local_wave_time(NINE, "Asia/Tokyo", utc(2026, 1, 15, 12, 0)) == utc(2026, 1, 16, 0, 0)


def test_zone_far_ahead_may_already_be_on_the_next_calendar_day():
    # 20:00 UTC on the 15th is 09:00 on the 16th in Kiritimati (UTC+14): exactly now.
    assert local_wave_time(NINE, "Pacific/Kiritimati", utc(2026, 1, 15, 19, 0)) == utc(2026, 1, 15, 19, 0)
    assert local_wave_time(NINE, "Pacific/Kiritimati", utc(2026, 1, 15, 19, 1)) == utc(2026, 1, 16, 19, 0)


def test_recipients_without_a_zone_or_with_an_unknown_one_follow_utc():
    now = utc(2026, 1, 15, 8, 30)
    assert local_wave_time(NINE, None, now) == utc(2026, 1, 15, 9, 0)
    assert local_wave_time(NINE, "Mars/Olympus_Mons", now) == utc(2026, 1, 15, 9, 0)


def test_local_time_follows_dst_offset_of_the_send_day_not_of_launch():
    # Launched the day before Europe/Lisbon springs forward (UTC+0 -> UTC+1 on 29 March 2026).
    launched = utc(2026, 3, 28, 12, 0)
    assert local_wave_time(NINE, "Europe/Lisbon", launched) == utc(2026, 3, 29, 8, 0)


def test_wall_time_in_the_spring_forward_gap_goes_out_after_the_jump():
    # New York skips 02:00-03:00 on 8 March 2026; 02:30 does not exist, so it goes at 03:30 EDT = 07:30 UTC.
    assert local_wave_time(time(2, 30), "America/New_York", utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 8, 7, 30)


def test_wall_time_repeated_when_clocks_go_back_uses_the_first_occurrence():
    # 01:30 happens twice in New York on 1 November 2026: first at EDT (05:30 UTC), then EST (06:30 UTC).
    assert local_wave_time(time(1, 30), "America/New_York", utc(2026, 11, 1, 4, 0)) == utc(2026, 11, 1, 5, 30)


def test_waves_group_zones_sharing_an_instant_and_come_earliest_first():
    now = utc(2026, 1, 15, 6, 0)
    waves = plan_waves(["Europe/London", None, "Europe/Lisbon", "Asia/Tokyo", "America/New_York"], NINE, now)
    assert waves == [
        Wave(utc(2026, 1, 15, 9, 0), (None, "Europe/Lisbon", "Europe/London")),  # all UTC+0 in January
        Wave(utc(2026, 1, 15, 14, 0), ("America/New_York",)),
        Wave(utc(2026, 1, 16, 0, 0), ("Asia/Tokyo",)),
    ]


def test_unthrottled_batches_run_at_their_wave_start():
    start = utc(2026, 1, 1, 9)
    assert spaced_run_times([start, start, start], [1000, 1000, 5], None) == [start, start, start]


def test_throttle_spaces_batches_by_the_time_their_sends_cost():
    start = utc(2026, 1, 1, 9)
    times = spaced_run_times([start] * 4, [600, 600, 600, 100], per_minute=600)
    assert [(t - start).total_seconds() for t in times] == [0, 60, 120, 180]


def test_throttle_holds_across_overlapping_waves_and_waits_for_later_ones():
    a, b = utc(2026, 1, 1, 9), utc(2026, 1, 1, 9, 0, 30)
    times = spaced_run_times([a, b, utc(2026, 1, 1, 12)], [500, 500, 500], per_minute=1000)
    assert times == [a, a + timedelta(seconds=30), utc(2026, 1, 1, 12)]


def test_no_minute_window_starts_more_sends_than_the_limit():
    start = utc(2026, 1, 1, 9)
    sizes = split_sizes(10_000, batch_size(700))
    times = spaced_run_times([start] * len(sizes), sizes, per_minute=700)
    for t in times:
        in_window = sum(size for at, size in zip(times, sizes, strict=True) if t <= at < t + timedelta(minutes=1))
        assert in_window <= 700


def test_batch_size_is_1000_or_the_per_minute_limit_when_smaller():
    assert batch_size(None) == 1000
    assert batch_size(50_000) == 1000
    assert batch_size(120) == 120
    assert split_sizes(2500, 1000) == [1000, 1000, 500]
    assert split_sizes(0, 1000) == []


def test_template_channels_include_web_push_when_push_exists():
    variants = {"en": {"in_app": {}, "push": {}}, "pt": {"email": {}}}
    assert template_channels(variants) == {"in_app", "push", "web_push", "email"}


def test_missing_variants_checks_the_default_locale_with_the_web_push_fallback():
    variants = {
        "en": {"in_app": {"title": "t", "body": "b"}, "push": {"title": "t", "body": "b"}},
        "pt": {"sms": {"text": "x"}},
    }
    assert missing_variants(variants, ["in_app", "web_push", "sms"], "en") == ["sms"]


def launch(**overrides):
    values = dict(
        audience_count=10,
        variants={"en": {"in_app": {"title": "t", "body": "b"}}},
        default_locale="en",
        channels=["in_app"],
        schedule="now",
        send_at=None,
        local_time=None,
        ends_at=None,
        now=utc(2026, 1, 1, 12),
    )
    values.update(overrides)
    return launch_problems(**values)


def test_a_complete_campaign_has_no_launch_problems():
    assert launch() == []


def test_launch_problems_name_each_reason():
    assert launch(audience_count=0) == ["The audience is empty: no recipient matches its filter."]
    assert launch(channels=["in_app", "email"]) == ["The template has no email variant in its default locale (en)."]
    assert launch(ends_at=utc(2026, 1, 1, 11)) == ["The end time is in the past."]
    assert launch(schedule="at", send_at=utc(2026, 1, 2), ends_at=utc(2026, 1, 1, 13)) == [
        "The campaign would end before it starts: the end time is before the send time."
    ]
    assert launch(schedule="local") == ["Choose the local time to send at."]
    assert launch(variants=None) == ["The template has no saved version."]


def test_progress_sums_channels_and_reasons_and_caps_percent_at_100():
    view = progress_from_counters(
        {
            "planned": 10,
            "sent:in_app": 10,
            "sent:email": 6,
            "suppressed:opted_out": 3,
            "suppressed:hard_stop": 1,
            "failed": 0,
        },
        read=4,
    )
    assert (view.sent, view.suppressed, view.read) == (16, 4, 4)
    assert view.suppressed_reasons == {"opted_out": 3, "hard_stop": 1}
    assert view.percent(channels=2) == 100
    assert progress_from_counters({"planned": 10, "sent:in_app": 5}).percent(channels=2) == 25
    assert progress_from_counters({}).percent(channels=1) == 0
