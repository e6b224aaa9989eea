"""The pure rules of outbound webhooks: schedule, auto-disable, signatures (against the reference library), events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from app.config import WEBHOOK_RETRY_SCHEDULE, ConfigError, webhook_settings
from app.delivery.endpoints import push_endpoint_problem, resolved_address_problem
from app.outbound_webhooks import events, signing
from app.outbound_webhooks.policy import retry_delay, should_disable, succeeded
from app.settings_values import parse_seconds_list

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_the_default_schedule_is_the_specs_and_ends_24_hours_after_the_first_attempt():
    schedule = parse_seconds_list("X", None, WEBHOOK_RETRY_SCHEDULE)
    assert schedule[:6] == (5, 300, 1800, 7200, 18000, 36000)
    assert sum(schedule) == 24 * 3600
    assert [retry_delay(n, schedule) for n in (1, 2, 7)] == [5, 300, 23095]
    assert retry_delay(8, schedule) is None and retry_delay(0, schedule) is None


def test_a_malformed_schedule_is_a_config_error_naming_the_setting():
    with pytest.raises(ConfigError, match="HERALD_WEBHOOK_RETRY_SCHEDULE"):
        webhook_settings({"HERALD_WEBHOOK_RETRY_SCHEDULE": "5,soon"})
    assert webhook_settings({"HERALD_WEBHOOK_ALLOWED_HOSTS": " 127.0.0.1, Localhost "})[
        "WEBHOOK_ALLOWED_HOSTS"
    ] == frozenset({"127.0.0.1", "localhost"})
    assert webhook_settings({})["WEBHOOK_ALLOWED_HOSTS"] == frozenset()


def test_an_endpoint_is_disabled_only_after_failing_long_enough_and_often_enough():
    day_ago = NOW - timedelta(hours=24)
    assert should_disable(day_ago, 10, NOW, 24, 10)
    assert not should_disable(day_ago, 9, NOW, 24, 10)
    assert not should_disable(NOW - timedelta(hours=23), 50, NOW, 24, 10)
    assert not should_disable(None, 50, NOW, 24, 10)


def test_only_2xx_is_success():
    assert succeeded(200) and succeeded(204)
    assert not any(succeeded(code) for code in (None, 301, 400, 410, 500))


def test_our_signature_is_what_the_reference_library_makes_and_accepts():
    secret = signing.new_secret()
    body = b'{"type":"delivery.sent"}'
    stamp = int(NOW.timestamp())
    assert signing.signature(secret, "msg_1", stamp, body) == Webhook(secret).sign("msg_1", NOW, body.decode())
    headers = signing.headers([secret, signing.new_secret()], "msg_1", stamp, body)
    assert signing.verify(secret, headers, body, stamp + 10)
    assert not signing.verify(secret, headers, body + b" ", stamp)
    assert not signing.verify(secret, headers, body, stamp + 301), "outside the 5-minute tolerance"


def test_only_sent_delivered_and_failed_deliveries_are_events():
    assert events.delivery_outcome("DISPATCHED", "n", "email", "ana")[0].type == "delivery.sent"
    assert (
        events.delivery_outcome("FAILED", "n", "sms", "ana", error_code="http_400")[0].data["error_code"] == "http_400"
    )
    assert events.delivery_outcome("PENDING", "n", "sms", "ana") == []
    assert events.delivery_outcome("SUPPRESSED", "n", "sms", "ana") == []
    assert events.ordering_key({"user_id": "ana"}, "msg_1") == "user:ana"
    assert events.ordering_key({}, "msg_1") == "msg:msg_1"


def test_allowed_hosts_are_the_only_exception_to_the_public_https_rule():
    assert push_endpoint_problem("http://127.0.0.1:8000/x") is not None
    assert push_endpoint_problem("http://127.0.0.1:8000/x", private_hosts=frozenset({"127.0.0.1"})) is None
    assert push_endpoint_problem("ftp://127.0.0.1/x", private_hosts=frozenset({"127.0.0.1"})) is not None
    assert push_endpoint_problem("http://10.0.0.1/x", private_hosts=frozenset({"127.0.0.1"})) is not None
    private = lambda *_a, **_k: [(2, 1, 6, "", ("10.1.2.3", 443))]  # noqa: E731
    assert "non-public" in resolved_address_problem("hooks.example.com", resolve=private)
    assert (
        resolved_address_problem("hooks.example.com", resolve=private, private_hosts=frozenset({"hooks.example.com"}))
        is None
    )
