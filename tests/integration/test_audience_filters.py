"""Audience filters compile to one SQL query and mean the same on SQLite and PostgreSQL."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.audiences.filters import compile_filter, validate_filter
from app.extensions import db
from app.models import Device, Recipient
from app.models.types import utcnow
from tests.factories import make_recipient


def matching(tree) -> set[str]:
    assert validate_filter(tree) == []
    where = compile_filter(tree, db.engine.dialect.name, utcnow())
    return set(db.session.scalars(select(Recipient.external_id).where(where)))


@pytest.fixture
def people(app):
    make_recipient(
        external_id="low",
        attributes={"balance": 20, "low_balance_threshold": 50, "plan": "pro"},
        timezone="Asia/Singapore",
    )
    make_recipient(
        external_id="high",
        attributes={"balance": 900, "low_balance_threshold": 50, "plan": "free"},
        timezone="Europe/Lisbon",
        last_seen_at=utcnow() - timedelta(days=1),
    )
    make_recipient(
        external_id="odd", attributes={"balance": "n/a", "low_balance_threshold": 50}, email=None, timezone=None
    )
    phoneless = make_recipient(
        external_id="device",
        attributes={},
        locale="ja",
        timezone="America/New_York",
        last_seen_at=utcnow() - timedelta(days=40),
    )
    db.session.add(Device(recipient_id=phoneless.id, platform="ios", token="ab" * 32))
    db.session.commit()


def test_attribute_to_attribute_comparison_ignores_non_numbers(people):
    rule = {"field": "attributes.balance", "op": "<", "field_value": "attributes.low_balance_threshold"}
    assert matching({"all": [rule]}) == {"low"}


def test_numbers_strings_in_and_exists(people):
    assert matching({"all": [{"field": "attributes.balance", "op": ">=", "value": 100}]}) == {"high"}
    assert matching({"all": [{"field": "attributes.plan", "op": "=", "value": "pro"}]}) == {"low"}
    assert matching({"all": [{"field": "attributes.plan", "op": "exists"}]}) == {"low", "high"}
    assert matching({"all": [{"field": "attributes.plan", "op": "not_exists"}]}) == {"odd", "device"}
    assert matching({"all": [{"field": "timezone", "op": "in", "value": ["Asia/Singapore", "Europe/Lisbon"]}]}) == {
        "low",
        "high",
    }
    assert matching({"all": [{"field": "timezone", "op": "not_in", "value": ["Asia/Singapore"]}]}) == {
        "high",
        "odd",
        "device",
    }


def test_groups_reachability_and_recency(people):
    assert matching(
        {"any": [{"field": "locale", "op": "=", "value": "ja"}, {"field": "external_id", "op": "=", "value": "low"}]}
    ) == {"low", "device"}
    assert matching({"all": [{"field": "reachable", "op": "=", "value": "push"}]}) == {"device"}
    assert matching({"all": [{"field": "reachable", "op": "=", "value": "email"}]}) == {"low", "high", "device"}
    assert matching({"all": [{"field": "last_seen_at", "op": "within_days", "value": 7}]}) == {"high"}
    assert matching({"all": []}) == {"low", "high", "odd", "device"}


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"all": [{"field": "password", "op": "=", "value": "x"}]}, "filter.all.0.field: unknown field"),
        ({"all": [{"field": "attributes.balance", "op": "~", "value": 1}]}, "filter.all.0.op: unknown operator"),
        ({"all": [{"field": "attributes.balance", "op": "<", "value": "cheap"}]}, "needs a number"),
        ({"all": [{"field": "attributes.balance", "op": "in", "value": []}]}, "list of 1-1000"),
        ({"all": [{"field": "reachable", "op": "=", "value": "fax"}]}, "reachable takes"),
        ({"all": [{"field": "attributes.a", "op": "<", "field_value": "email"}]}, "compares two attributes"),
        ({"both": []}, "filter: unknown key 'both'"),
    ],
)
def test_invalid_filters_name_the_problem_and_its_place(tree, message):
    problems = validate_filter(tree)
    assert problems and message in problems[0]
