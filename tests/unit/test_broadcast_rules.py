"""Broadcasts' pure rules: what can be one, and entry ids that name (broadcast, reader) and never a uuid4."""

import uuid

from app.broadcasts.launch import eligible
from app.broadcasts.reading import item_id, parse_item_id


def test_only_an_in_app_only_send_at_one_instant_can_be_a_broadcast():
    assert eligible(["in_app"], "now", None) and eligible(["in_app"], "at", None)
    assert not eligible(["in_app", "email"], "now", None)
    assert not eligible(["email"], "now", None)
    assert not eligible(["in_app"], "local", None)  # one wave per zone
    assert not eligible(["in_app"], "now", 1000)  # throttled


def test_an_entry_id_round_trips_and_no_notification_id_parses_as_one():
    assert parse_item_id(item_id(7, 123456789)) == (7, 123456789)
    assert len(item_id(2**40, 2**50)) == 32
    assert all(parse_item_id(uuid.uuid4().hex) is None for _ in range(1000))
    assert parse_item_id("") is None and parse_item_id("z" * 32) is None and parse_item_id("0" * 31) is None
