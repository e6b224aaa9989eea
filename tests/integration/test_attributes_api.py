"""PATCH /v1/users/{id}/attributes and POST /v1/users:batch: merges in SQL, all-or-nothing batches."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from app.extensions import db
from app.models import Recipient
from tests.factories import make_recipient


def test_patch_merges_keys_and_null_deletes_one(api):
    make_recipient(external_id="ana", attributes={"balance": 100, "plan": "pro", "old": True})
    response = api.patch(
        "/v1/users/ana/attributes", json={"attributes": {"balance": 42.5, "old": None, "low_balance_threshold": 50}}
    )
    assert response.status_code == 200
    assert response.json["attributes"] == {"balance": 42.5, "plan": "pro", "low_balance_threshold": 50}
    db.session.expire_all()
    assert (
        db.session.scalar(select(Recipient.attributes).where(Recipient.external_id == "ana"))
        == response.json["attributes"]
    )


def test_patch_of_an_unknown_user_is_404_and_bad_bodies_are_400_with_the_field(api):
    assert api.patch("/v1/users/nobody/attributes", json={"attributes": {"a": 1}}).status_code == 404
    make_recipient(external_id="ana")
    response = api.patch("/v1/users/ana/attributes", json={"attributes": {"bad name!": 1}})
    assert response.status_code == 400
    response = api.patch("/v1/users/ana/attributes", json={"attributes": {"nested": {"a": 1}}})
    assert response.status_code == 400 and response.json["error"]["fields"][0]["field"].startswith("attributes.nested")


def test_concurrent_patches_of_different_keys_both_land(app, api):
    make_recipient(external_id="ana", attributes={})
    for n in range(5):
        assert api.patch("/v1/users/ana/attributes", json={"attributes": {f"k{n}": n}}).status_code == 200
    db.session.expire_all()
    assert db.session.scalar(select(Recipient.attributes).where(Recipient.external_id == "ana")) == {
        f"k{n}": n for n in range(5)
    }


def test_batch_creates_and_updates_only_the_fields_given(api):
    make_recipient(
        external_id="old", email="old@example.com", timezone="Europe/Lisbon", attributes={"plan": "pro", "gone": 1}
    )
    response = api.post(
        "/v1/users:batch",
        json={
            "users": [
                {"user_id": "old", "attributes": {"balance": 10, "gone": None}},
                {
                    "user_id": "new",
                    "attributes": {"balance": 99},
                    "timezone": "Asia/Singapore",
                    "email": "New@Example.com",
                },
            ]
        },
    )
    assert response.status_code == 200
    assert response.json == {"received": 2, "created": 1, "updated": 1}
    db.session.expire_all()
    old = db.session.scalar(select(Recipient).where(Recipient.external_id == "old"))
    new = db.session.scalar(select(Recipient).where(Recipient.external_id == "new"))
    assert (old.email, old.timezone, old.attributes) == (
        "old@example.com",
        "Europe/Lisbon",
        {"plan": "pro", "balance": 10},
    )
    assert (new.email, new.timezone, new.locale, new.attributes, new.hard_stop) == (
        "new@example.com",
        "Asia/Singapore",
        "en",
        {"balance": 99},
        False,
    )


def test_batch_with_one_invalid_user_writes_nothing_and_names_the_index(api):
    response = api.post(
        "/v1/users:batch",
        json={
            "users": [
                {"user_id": "a", "attributes": {"balance": 1}},
                {"user_id": "b", "timezone": "Mars/Olympus"},
            ]
        },
    )
    assert response.status_code == 400
    assert response.json["error"]["fields"][0]["field"] == "users.1.timezone"
    assert db.session.scalar(select(func.count()).select_from(Recipient)) == 0
    response = api.post("/v1/users:batch", json={"users": [{"user_id": "a"}, {"user_id": "a"}]})
    assert response.status_code == 400 and response.json["error"]["fields"][0]["field"] == "users.1.user_id"
    assert api.post("/v1/users:batch", json={"users": [{"user_id": str(n)} for n in range(10_001)]}).status_code == 400


def test_batch_of_ten_thousand_is_one_call_and_reports_its_rate(api):
    users = [
        {
            "user_id": f"w-{n}",
            "timezone": "Europe/Lisbon",
            "attributes": {"balance": n % 100, "low_balance_threshold": 50, "country": "PT"},
        }
        for n in range(10_000)
    ]
    started = time.perf_counter()
    response = api.post("/v1/users:batch", json={"users": users})
    first = time.perf_counter() - started
    assert response.status_code == 200 and response.json["created"] == 10_000
    started = time.perf_counter()
    response = api.post("/v1/users:batch", json={"users": users})
    second = time.perf_counter() - started
    assert response.json == {"received": 10_000, "created": 0, "updated": 10_000}
    print(
        f"\n[bench] POST /v1/users:batch on {db.engine.dialect.name}: 10,000 new users in {first:.2f} s "
        f"({10_000 / first:,.0f}/s), 10,000 updates in {second:.2f} s ({10_000 / second:,.0f}/s)"
    )
    assert db.session.scalar(select(func.count()).select_from(Recipient)) == 10_000
