"""JSON values are stored as sent or refused with a 400 naming the field: never converted to another type."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.models import Recipient
from tests.factories import make_recipient


def stored_attributes(user_id: str) -> dict:
    db.session.expire_all()
    return db.session.scalar(db.select(Recipient).filter_by(external_id=user_id)).attributes


def fields(response) -> set[str]:
    return {item["field"] for item in response.json["error"]["fields"]}


@pytest.mark.parametrize("value", ["0" * 2001, "1.5" + "0" * 2000, "9" * 2001])
def test_a_numeric_looking_string_over_the_limit_is_a_400_in_a_patch_not_a_number(api, value):
    make_recipient(external_id="ana")
    response = api.patch("/v1/users/ana/attributes", json={"attributes": {"zip": value}})
    assert response.status_code == 400 and any(field.startswith("attributes.zip") for field in fields(response))
    assert stored_attributes("ana") == {}


def test_a_numeric_looking_string_over_the_limit_is_a_400_in_a_batch_and_nothing_is_written(api):
    response = api.post(
        "/v1/users:batch",
        json={
            "users": [
                {"user_id": "u-1", "attributes": {"balance": 1}},
                {"user_id": "u-2", "attributes": {"price": "1.5" + "0" * 2000}},
            ]
        },
    )
    assert response.status_code == 400 and any(
        field.startswith("users.1.attributes.price") for field in fields(response)
    )
    assert db.session.scalar(db.select(db.func.count()).select_from(Recipient)) == 0


def test_strings_that_look_like_numbers_or_booleans_stay_strings(api):
    make_recipient(external_id="ana")
    sent = {"zip": "02134", "price": "1.50", "flag": "true", "big": "9007199254740993", "list": ["1", 1, True]}
    assert api.patch("/v1/users/ana/attributes", json={"attributes": sent}).status_code == 200
    assert stored_attributes("ana") == sent
    assert api.get("/v1/users/ana").json["attributes"] == sent


@pytest.mark.parametrize("number", [2**53 + 1, -(2**53) - 1, 1e300])
def test_numbers_beyond_two_to_the_53_are_refused_not_rounded(api, number):
    make_recipient(external_id="ana")
    response = api.patch("/v1/users/ana/attributes", json={"attributes": {"n": number}})
    assert response.status_code == 400 and stored_attributes("ana") == {}


def test_integers_and_floats_keep_their_json_type(api):
    make_recipient(external_id="ana")
    assert (
        api.patch("/v1/users/ana/attributes", json={"attributes": {"i": 2**53, "f": 2.0, "b": False}}).status_code
        == 200
    )
    stored = stored_attributes("ana")
    assert stored == {"i": 2**53, "f": 2.0, "b": False}
    assert type(stored["i"]) is int and type(stored["f"]) is float and type(stored["b"]) is bool


@pytest.mark.parametrize("enabled", [0, 1, "true", "false", None])
def test_a_preference_must_be_a_json_boolean(api, enabled):
    make_recipient(external_id="ana")
    response = api.put(
        "/v1/users/ana/preferences",
        json={"preferences": [{"channel": "email", "category": "promotions", "enabled": enabled}]},
    )
    assert response.status_code == 400 and fields(response) == {"preferences.0.enabled"}
    assert api.get("/v1/users/ana/preferences").json["preferences"] == []


@pytest.mark.parametrize(("field", "value"), [("hard_stop", 1), ("clear_quiet_hours", "yes")])
def test_other_booleans_are_strict_too(api, field, value):
    make_recipient(external_id="ana")
    response = api.put("/v1/users/ana/preferences", json={field: value})
    assert response.status_code == 400 and fields(response) == {field}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": 42}, "user_id"),
        ({"title": 7}, "title"),
        ({"channels": "in_app"}, "channels"),
        ({"data": []}, "data"),
        ({"send_at": 1767225600}, "send_at"),
    ],
)
def test_notification_fields_of_the_wrong_json_type_are_named(api, body, field):
    make_recipient(external_id="ana")
    payload = {"user_id": "ana", "type": "transactional", "channels": ["in_app"], "title": "Hi", **body}
    response = api.post("/v1/notifications", json=payload)
    assert response.status_code == 400 and field in fields(response), response.json


def test_a_user_id_is_kept_as_sent_with_its_spaces(api):
    response = api.put("/v1/users/%20ana%20", json={"locale": "en"})
    assert response.status_code == 201 and response.json["user_id"] == " ana "


def test_a_body_that_is_not_a_json_object_is_named_as_the_body(api):
    for raw in (b"[1, 2]", b"{not json", b'"text"'):
        response = api.post("/v1/notifications", data=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and fields(response) == {"(body)"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"users": [{"user_id": "a\x00b"}]}, "users.0.user_id"),
        ({"users": [{"user_id": "a", "attributes": {"note": ["ok", "x\x00"]}}]}, "users.0.attributes.note.1"),
    ],
)
def test_a_string_holding_nul_is_a_400_naming_it_on_every_database(api, body, field):
    response = api.post("/v1/users:batch", json=body)
    assert response.status_code == 400 and fields(response) == {field}


def test_notification_data_holding_nul_is_a_400_and_an_id_holding_nul_is_a_404(api):
    make_recipient(external_id="ana")
    response = api.post(
        "/v1/notifications",
        json={
            "user_id": "ana",
            "type": "transactional",
            "channels": ["in_app"],
            "title": "Hi",
            "data": {"deep": {"x\x00": 1}},
        },
    )
    assert response.status_code == 400 and fields(response) == {"data.deep.x\x00"}
    assert api.get("/v1/users/a%00b").status_code == 404
