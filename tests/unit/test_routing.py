from datetime import UTC, datetime, time

import pytest

from app.delivery.routing import DEFER, SEND, SUPPRESS, NotificationFacts, RecipientFacts, route

NOON_UTC = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ALL = frozenset({"in_app", "email", "sms", "push", "web_push"})


def decide(
    channels=("in_app",), type_="transactional", category="general", priority="normal", cap=3, now=NOON_UTC, **facts
):
    facts.setdefault("reachable", ALL)
    decisions = route(NotificationFacts(type_, category, priority, tuple(channels)), RecipientFacts(**facts), now, cap)
    return {d.channel: (d.action, d.reason) for d in decisions}


def test_sends_on_every_requested_reachable_channel():
    assert decide(("in_app", "email")) == {"in_app": (SEND, None), "email": (SEND, None)}


def test_hard_stop_blocks_everything_including_security():
    assert decide(("in_app", "email"), type_="security", hard_stop=True) == {
        "in_app": (SUPPRESS, "hard_stop"),
        "email": (SUPPRESS, "hard_stop"),
    }


def test_unreachable_channel_is_suppressed_not_dropped():
    assert decide(("email",), reachable=frozenset({"in_app"})) == {"email": (SUPPRESS, "unreachable")}


def test_marketing_honours_its_category_opt_out():
    prefs = {("email", "promotions"): False}
    assert decide(("email",), type_="marketing", category="promotions", preferences=prefs)["email"] == (
        SUPPRESS,
        "opted_out",
    )


def test_marketing_honours_blanket_marketing_opt_out():
    prefs = {("email", "marketing"): False}
    assert decide(("email",), type_="marketing", category="promotions", preferences=prefs)["email"] == (
        SUPPRESS,
        "opted_out",
    )


def test_transactional_bypasses_blanket_marketing_opt_out():
    prefs = {("email", "marketing"): False}
    assert decide(("email",), type_="transactional", category="receipts", preferences=prefs)["email"] == (SEND, None)


def test_transactional_honours_opt_out_of_its_own_category():
    prefs = {("push", "low_balance"): False}
    assert decide(("push",), category="low_balance", preferences=prefs)["push"] == (SUPPRESS, "opted_out")


def test_security_bypasses_category_opt_outs():
    prefs = {("push", "security"): False, ("push", "marketing"): False}
    assert decide(("push",), type_="security", category="security", preferences=prefs)["push"] == (SEND, None)


def test_channel_switched_off_stops_even_security():
    prefs = {("sms", "*"): False}
    assert decide(("sms",), type_="security", preferences=prefs)["sms"] == (SUPPRESS, "channel_disabled")


def test_suppression_list_always_wins():
    assert decide(("email",), type_="security", suppressed=frozenset({"email"}))["email"] == (
        SUPPRESS,
        "suppressed_address",
    )


def test_marketing_sms_needs_explicit_opt_in():
    assert decide(("sms",), type_="marketing")["sms"] == (SUPPRESS, "no_marketing_sms_opt_in")
    assert decide(("sms",), type_="marketing", preferences={("sms", "marketing"): True})["sms"] == (SEND, None)


def test_marketing_frequency_cap_suppresses_the_fourth_in_an_hour():
    assert decide(("in_app",), type_="marketing", marketing_sent_last_hour=2)["in_app"] == (SEND, None)
    assert decide(("in_app",), type_="marketing", marketing_sent_last_hour=3)["in_app"] == (SUPPRESS, "frequency_cap")
    assert decide(("in_app",), type_="transactional", marketing_sent_last_hour=30)["in_app"] == (SEND, None)


QUIET = {"timezone": "Asia/Singapore", "quiet_start": time(22, 0), "quiet_end": time(7, 0)}
# 16:00 UTC is 00:00 in Singapore: inside 22:00-07:00.
MIDNIGHT_SINGAPORE = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)


def test_quiet_hours_defer_interrupting_channels_to_the_window_end():
    decisions = route(
        NotificationFacts("transactional", "general", "normal", ("push", "sms", "web_push", "in_app", "email")),
        RecipientFacts(reachable=ALL, **QUIET),
        MIDNIGHT_SINGAPORE,
        3,
    )
    by_channel = {d.channel: d for d in decisions}
    for channel in ("push", "sms", "web_push"):
        assert by_channel[channel].action == DEFER
        # 07:00 Singapore (UTC+8) on the 3rd is 23:00 UTC on the 2nd.
        assert by_channel[channel].not_before == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    assert by_channel["in_app"].action == SEND and by_channel["email"].action == SEND


@pytest.mark.parametrize(("type_", "priority"), [("security", "high"), ("transactional", "critical")])
def test_critical_and_security_go_through_quiet_hours(type_, priority):
    assert decide(("push",), type_=type_, priority=priority, now=MIDNIGHT_SINGAPORE, **QUIET)["push"] == (SEND, None)


def test_outside_quiet_hours_nothing_is_deferred():
    assert decide(("push",), now=NOON_UTC, **QUIET)["push"] == (SEND, None)  # 20:00 in Singapore


def test_reachable_channels_follow_addresses_and_active_device_kinds():
    from app.delivery.routing import reachable_channels

    assert reachable_channels(None, None, set()) == {"in_app"}
    assert reachable_channels("a@example.com", "+14155552671", {"ios"}) == {"in_app", "email", "sms", "push"}
    assert reachable_channels(None, None, {"android", "web"}) == {"in_app", "push", "web_push"}
