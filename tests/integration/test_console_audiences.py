"""Audience builder: live count and sample from one count and one sample query, row messages, saving, reuse."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from app.audiences.filters import validate_filter
from app.audiences.store import audience_query, count_and_sample
from app.console.forms_content import Builder, Group, Row, builder_from_tree, invalid_controls, tree_from_builder
from app.extensions import db
from app.models import Audience, AuditEntry, Recipient
from app.models.types import utcnow
from tests.factories import make_recipient, make_staff

PASSWORD = "correct horse battery"
LOW_BALANCE = {
    "mode": "all",
    "row": ["1", "2"],
    "r1-group": "0",
    "r1-field": "attributes.balance",
    "r1-op": "<",
    "r1-kind": "attribute",
    "r1-value": "low_balance_threshold",
    "r2-group": "0",
    "r2-field": "timezone",
    "r2-op": "in",
    "r2-kind": "value",
    "r2-value": "Asia/Singapore, Europe/Lisbon",
}


@pytest.fixture
def marketer(app, client):
    make_staff(email="mia@example.com", password=PASSWORD, role="marketer")
    client.post("/console/login", data={"email": "mia@example.com", "password": PASSWORD})
    return client


@pytest.fixture
def people(app):
    make_recipient(
        external_id="sg-low", timezone="Asia/Singapore", attributes={"balance": 10, "low_balance_threshold": 50}
    )
    make_recipient(
        external_id="lis-low",
        timezone="Europe/Lisbon",
        attributes={"balance": 49.5, "low_balance_threshold": 50},
        last_seen_at=utcnow() - timedelta(days=2),
    )
    make_recipient(
        external_id="ny-low", timezone="America/New_York", attributes={"balance": 1, "low_balance_threshold": 50}
    )
    make_recipient(
        external_id="sg-rich", timezone="Asia/Singapore", attributes={"balance": 900, "low_balance_threshold": 50}
    )
    make_recipient(
        external_id="sg-odd", timezone="Asia/Singapore", attributes={"balance": "n/a", "low_balance_threshold": 50}
    )


def count_of(html: str) -> int:
    return int(re.search(r'data-testid="audience-count">(\d+)<', html).group(1))


def sample_of(html: str) -> list[str]:
    return re.findall(r'<tr><th scope="row">([^<]+)</th>', html)


def test_live_count_and_sample_match_the_filter(marketer, people):
    html = marketer.post("/console/audiences/reach", data=LOW_BALANCE, headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert count_of(html) == 2
    assert sample_of(html) == ["sg-low", "lis-low"]


def test_any_group_nested_under_all(marketer, people):
    data = {
        **LOW_BALANCE,
        "row": ["1", "3", "4"],
        "group": ["1"],
        "g1-mode": "any",
        "r3-group": "1",
        "r3-field": "timezone",
        "r3-op": "=",
        "r3-value": "America/New_York",
        "r4-group": "1",
        "r4-field": "last_seen_at",
        "r4-op": "within_days",
        "r4-value": "7",
    }
    html = marketer.post("/console/audiences/reach", data=data).get_data(as_text=True)
    assert sorted(sample_of(html)) == ["lis-low", "ny-low"]


def test_count_and_sample_are_exactly_two_queries(app, people):
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        reach = count_and_sample(
            tree_from_builder(Builder("all", (Row(1, 0, "attributes.balance", "<", "value", "100"),)))[0], utcnow()
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert reach.count == 3 and [r.external_id for r in reach.sample] == ["sg-low", "lis-low", "ny-low"]
    assert len(statements) == 2 and "count(" in statements[0].lower() and "limit" in statements[1].lower()


def test_sample_stops_at_twenty_while_the_count_is_all(marketer):
    for number in range(25):
        make_recipient(external_id=f"u{number:02}", attributes={"score": number})
    html = marketer.post(
        "/console/audiences/reach",
        data={"mode": "all", "row": ["1"], "r1-field": "attributes.score", "r1-op": ">=", "r1-value": "0"},
    ).get_data(as_text=True)
    assert count_of(html) == 25 and len(sample_of(html)) == 20


def test_validation_messages_sit_next_to_the_offending_row(marketer, people):
    data = {
        **LOW_BALANCE,
        "row": ["1", "2", "5"],
        "r5-group": "0",
        "r5-field": "attributes.balance",
        "r5-op": "<",
        "r5-value": "cheap",
    }
    html = marketer.post("/console/audiences/reach", data=data).get_data(as_text=True)
    assert 'data-testid="audience-count-invalid"' in html
    assert re.search(r'id="row-err-5"[^>]*>value: &lt; on an attribute needs a number<', html)
    assert re.search(r'id="row-err-1"[^>]*><', html)
    # The stylesheet marks only the controls named here: row 5's value box, nothing of row 1.
    assert re.search(r'id="row-err-5"[^>]*data-invalid="value"', html)
    assert re.search(r'id="row-err-1"[^>]*data-invalid=""', html)


def test_without_javascript_add_row_and_count_rerender_the_page(marketer, people):
    page = marketer.post("/console/audiences/new", data={**LOW_BALANCE, "action": "add_row:0"}).get_data(as_text=True)
    assert 'name="r3-field"' in page
    page = marketer.post("/console/audiences/new", data={**LOW_BALANCE, "action": "count"}).get_data(as_text=True)
    assert count_of(page) == 2
    page = marketer.post("/console/audiences/new", data={**LOW_BALANCE, "action": "remove_row:2"}).get_data(
        as_text=True
    )
    assert 'name="r2-field"' not in page and count_of(page) == 3


def test_saving_an_audience_keeps_the_filter_and_audits_it(marketer, people):
    response = marketer.post(
        "/console/audiences/new", data={**LOW_BALANCE, "name": "Low balance in SG/Lisbon", "action": "save"}
    )
    assert response.status_code == 302
    audience = db.session.scalar(select(Audience))
    assert audience.filter == {
        "all": [
            {"field": "attributes.balance", "op": "<", "field_value": "attributes.low_balance_threshold"},
            {"field": "timezone", "op": "in", "value": ["Asia/Singapore", "Europe/Lisbon"]},
        ]
    }
    assert (
        db.session.scalar(select(AuditEntry).where(AuditEntry.action == "audience.create")).actor == "mia@example.com"
    )
    page = marketer.get(f"/console/audiences/{audience.id}").get_data(as_text=True)
    assert 'value="low_balance_threshold"' not in page and 'value="attributes.low_balance_threshold"' in page
    assert count_of(page) == 2
    assert "Low balance in SG/Lisbon" in marketer.get("/console/audiences").get_data(as_text=True)


def test_save_needs_a_name_a_free_name_and_a_valid_filter(marketer, people):
    no_name = marketer.post("/console/audiences/new", data={**LOW_BALANCE, "action": "save"})
    assert no_name.status_code == 422 and "Name the audience" in no_name.get_data(as_text=True)
    marketer.post("/console/audiences/new", data={**LOW_BALANCE, "name": "Taken", "action": "save"})
    taken = marketer.post("/console/audiences/new", data={**LOW_BALANCE, "name": "Taken", "action": "save"})
    assert taken.status_code == 422 and "already exists" in taken.get_data(as_text=True)
    bad = marketer.post(
        "/console/audiences/new",
        data={"mode": "all", "row": ["1"], "r1-field": "password", "name": "Bad", "action": "save"},
    )
    assert bad.status_code == 422 and "unknown field" in bad.get_data(as_text=True)
    assert db.session.scalar(select(Audience).where(Audience.name == "Bad")) is None


def test_audience_query_selects_recipient_ids_for_other_areas(app, people):
    staff = make_staff()
    from app.audiences.store import save_audience

    audience = save_audience(
        None,
        "low",
        tree_from_builder(
            Builder("all", (Row(1, 0, "attributes.balance", "<", "attribute", "low_balance_threshold"),))
        )[0],
        staff,
    )
    ids = set(db.session.scalars(audience_query(audience, utcnow())))
    expected = set(
        db.session.scalars(select(Recipient.id).where(Recipient.external_id.in_(["sg-low", "lis-low", "ny-low"])))
    )
    assert ids == expected
    assert set(
        db.session.scalars(
            audience_query({"all": [{"field": "timezone", "op": "=", "value": "Europe/Lisbon"}]}, utcnow())
        )
    ) == {db.session.scalar(select(Recipient.id).where(Recipient.external_id == "lis-low"))}


def test_saved_tree_round_trips_through_the_builder():
    builder = Builder(
        "any",
        (
            Row(1, 0, "attributes.plan", "in", "value", "pro, 3"),
            Row(2, 1, "reachable", "=", "value", "email"),
            Row(3, 1, "attributes.vip", "=", "value", "true"),
        ),
        (Group(1, "all"),),
    )
    tree, paths = tree_from_builder(builder)
    assert tree == {
        "any": [
            {"field": "attributes.plan", "op": "in", "value": ["pro", 3]},
            {
                "all": [
                    {"field": "reachable", "op": "=", "value": "email"},
                    {"field": "attributes.vip", "op": "=", "value": True},
                ]
            },
        ]
    }
    assert paths == {1: "filter.any.0", 2: "filter.any.1.all.0", 3: "filter.any.1.all.1"}
    assert tree_from_builder(builder_from_tree(tree))[0] == tree


def test_only_the_controls_a_message_names_are_marked_invalid():
    builder = Builder(
        "all",
        (
            Row(1, 0, "balanse", "=", "value", "12"),  # unknown field, good value
            Row(2, 0, "attributes.balance", "<", "value", "cheap"),  # good field, bad value
            Row(3, 0, "attributes.balance", "<", "attribute", "low_balance_threshold"),  # all good
            Row(4, 0, "reachable", "<", "value", "email"),  # the condition as a whole
            Row(5, 1, "timezone", "in", "attribute", "attributes.zone"),  # compared attribute, in a group
        ),
        (Group(1, "any"),),
    )
    tree, paths = tree_from_builder(builder)
    assert invalid_controls(validate_filter(tree), paths) == {1: ["field"], 2: ["value"], 5: ["value"]}
