"""Collapsing inbox items by collapse_key, their headlines, and which deep links may be followed."""

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from app.inbox.grouping import group_entries, headline, is_safe_link, safe_link

READ = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Item:
    id: str
    title: str | None = "Title"
    body: str | None = None
    data: dict = field(default_factory=dict)
    collapse_key: str | None = None
    read_at: datetime | None = None


def likes(*actors, key="photo-1", action="liked your photo"):
    return [
        Item(f"like-{n}", f"{a} liked your photo", data={"actor": a, "action": action}, collapse_key=key)
        for n, a in enumerate(actors)
    ]


def test_items_without_collapse_key_stay_one_entry_each_in_order():
    items = [Item("a"), Item("b"), Item("c")]
    assert [e.ids for e in group_entries(items)] == [["a"], ["b"], ["c"]]


def test_same_collapse_key_becomes_one_entry_placed_at_its_newest_member():
    items = [Item("n1", collapse_key="k"), Item("x"), Item("n2", collapse_key="k"), Item("y", collapse_key="other")]
    entries = group_entries(items)
    assert [e.ids for e in entries] == [["n1", "n2"], ["x"], ["y"]]
    assert entries[0].count == 2 and entries[0].latest.id == "n1"


def test_group_is_unread_while_any_member_is_and_lists_only_those():
    items = [
        Item("a", collapse_key="k", read_at=READ),
        Item("b", collapse_key="k"),
        Item("c", collapse_key="k", read_at=READ),
    ]
    [entry] = group_entries(items)
    assert entry.unread and entry.unread_ids == ["b"]
    [entry] = group_entries([Item("a", collapse_key="k", read_at=READ)])
    assert not entry.unread


def test_headline_names_the_newest_actor_and_counts_the_others():
    assert headline(likes("Ana", "Bo", "Cy", "Di", "Ed")) == "Ana and 4 others liked your photo"


def test_headline_with_two_actors_names_both_and_repeats_count_once():
    assert headline(likes("Ana", "Bo", "Ana")) == "Ana and Bo liked your photo"
    assert headline(likes("Ana", "Ana")) == "Ana liked your photo"


def test_headline_without_actors_counts_notifications():
    assert (
        headline([Item("a", collapse_key="k"), Item("b", collapse_key="k"), Item("c", collapse_key="k")])
        == "3 notifications"
    )


def test_headline_with_actors_but_no_action_is_just_the_names():
    assert headline(likes("Ana", "Bo", "Cy", action=None)) == "Ana and 2 others"


def test_a_single_notification_keeps_its_title_or_body():
    assert headline([Item("a", title="Your order shipped")]) == "Your order shipped"
    assert headline([Item("a", title=None, body="Body only")]) == "Body only"
    assert headline([Item("a", title=None)]) == "Notification"


@pytest.mark.parametrize(
    "link",
    [
        "https://shop.example.com/orders/5",
        "http://example.com",
        "/orders/5",
        "orders/5?tab=items#x",
        "/a:b",
    ],
)
def test_http_and_relative_links_are_followed(link):
    assert is_safe_link(link)


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox",
        "//evil.example.com/x",
        "/\\evil.example.com",
        "https:///no-host",
        "mailto:ana@example.com",
        "file:///etc/passwd",
        "x" * 3000,
    ],
)
def test_other_schemes_and_tricks_are_not(link):
    assert not is_safe_link(link)


def test_safe_link_reads_url_then_deep_link_and_drops_unsafe_ones():
    assert safe_link({"url": "/a", "deep_link": "/b"}) == "/a"
    assert safe_link({"deep_link": "app/b"}) == "app/b"
    assert safe_link({"url": "javascript:alert(1)", "deep_link": "/b"}) is None
    assert safe_link({"url": 5}) is None and safe_link({}) is None and safe_link(None) is None


def test_preferences_grid_shows_marketing_sms_off_until_opted_in():
    from app.inbox.preferences import grid

    _switches, rows = grid({"marketing", "receipts"}, set(), {})
    cells = {(row.category, cell.channel): cell.enabled for row in rows for cell in row.cells}
    assert cells[("marketing", "sms")] is False and cells[("marketing", "email")] is True
    assert cells[("receipts", "sms")] is True
    _switches, rows = grid({"marketing"}, set(), {("sms", "marketing"): True})
    assert {cell.channel: cell.enabled for cell in rows[0].cells}["sms"] is True
