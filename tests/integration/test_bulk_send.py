"""POST /v1/notifications/bulk: up to 1,000 single sends, all or nothing, one transaction; or one payload to an audience."""

from sqlalchemy import func, select

from app.delivery.constants import DELIVERED
from app.extensions import db
from app.models import Audience, Campaign, Delivery, IdempotencyKey, Notification, Recipient
from tests.factories import make_recipient, make_template


def item(user_id, **fields):
    return {
        "user_id": user_id,
        "type": "transactional",
        "category": "orders",
        "title": f"Hi {user_id}",
        "channels": ["in_app"],
        **fields,
    }


def count(model, *where):
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_items_are_stored_together_in_order_and_routed_by_the_pipeline(api, run_jobs):
    for name in ("ana", "bo", "cy"):
        make_recipient(external_id=name)
    response = api.post("/v1/notifications/bulk", json={"items": [item("ana", data={"n": 1}), item("bo"), item("cy")]})
    assert response.status_code == 202
    results = response.json["items"]
    assert [r["status"] for r in results] == ["accepted"] * 3 and not any(r["replayed"] for r in results)
    owners = dict(
        db.session.execute(
            select(Notification.id, Recipient.external_id).join(Recipient, Recipient.id == Notification.recipient_id)
        ).all()
    )
    assert [owners[r["id"]] for r in results] == ["ana", "bo", "cy"]
    assert db.session.get(Notification, results[0]["id"]).data == {"n": 1}
    run_jobs()
    assert count(Delivery, Delivery.status == DELIVERED) == 3
    assert api.get("/v1/users/bo/notifications").json["items"][0]["title"] == "Hi bo"


def test_one_unknown_user_or_template_stores_nothing_and_names_the_items(api):
    make_recipient(external_id="ana")
    response = api.post(
        "/v1/notifications/bulk", json={"items": [item("ana"), item("ghost"), item("ana"), item("nobody")]}
    )
    assert response.status_code == 404 and response.json["error"]["code"] == "unknown_user"
    assert [f["field"] for f in response.json["error"]["fields"]] == ["items.1.user_id", "items.3.user_id"]
    response = api.post(
        "/v1/notifications/bulk", json={"items": [item("ana"), item("ana", template="nope", title=None)]}
    )
    assert response.status_code == 404 and response.json["error"]["fields"][0]["field"] == "items.1.template"
    assert count(Notification) == 0


def test_an_invalid_item_is_400_naming_it_and_over_the_cap_names_the_limit(api):
    make_recipient(external_id="ana")
    response = api.post("/v1/notifications/bulk", json={"items": [item("ana"), item("ana", channels=["pigeon"])]})
    assert response.status_code == 400 and response.json["error"]["fields"][0]["field"].startswith("items.1.channels")
    response = api.post("/v1/notifications/bulk", json={"items": [item("ana")] * 1001})
    assert response.status_code == 400
    field = response.json["error"]["fields"][0]
    assert field["field"] == "items" and "1000" in field["message"]
    response = api.post("/v1/notifications/bulk", json={"items": [item("ana")], "audience": 1})
    assert response.status_code == 400 and response.json["error"]["fields"][0]["field"] == "items"
    assert count(Notification) == 0


def test_item_keys_replay_their_first_notification_and_a_changed_body_fails_the_whole_call(api):
    make_recipient(external_id="ana")
    make_recipient(external_id="bo")
    single = api.post("/v1/notifications", json=item("ana", idempotency_key="k-ana"))
    first = api.post(
        "/v1/notifications/bulk",
        json={"items": [item("ana", idempotency_key="k-ana"), item("bo", idempotency_key="k-bo")]},
    )
    assert first.status_code == 202
    assert first.json["items"][0] == {"id": single.json["id"], "status": "accepted", "replayed": True}
    assert first.json["items"][1]["replayed"] is False
    again = api.post("/v1/notifications/bulk", json={"items": [item("bo", idempotency_key="k-bo"), item("bo")]})
    assert again.json["items"][0]["id"] == first.json["items"][1]["id"] and again.json["items"][0]["replayed"]
    assert count(Notification) == 3
    conflict = api.post(
        "/v1/notifications/bulk", json={"items": [item("ana"), item("bo", idempotency_key="k-bo", body="other")]}
    )
    assert conflict.status_code == 409 and "items.1" in conflict.json["error"]["message"]
    assert count(Notification) == 3 and count(IdempotencyKey) == 2


def test_the_same_key_twice_in_one_call_is_one_notification_unless_the_bodies_differ(api):
    make_recipient(external_id="ana")
    same = api.post(
        "/v1/notifications/bulk", json={"items": [item("ana", idempotency_key="k"), item("ana", idempotency_key="k")]}
    )
    assert same.status_code == 202 and same.json["items"][0]["id"] == same.json["items"][1]["id"]
    assert count(Notification) == 1
    differ = api.post(
        "/v1/notifications/bulk",
        json={"items": [item("ana", idempotency_key="j"), item("ana", idempotency_key="j", title="other")]},
    )
    assert differ.status_code == 409 and count(Notification) == 1


def test_an_audience_gets_one_payload_through_a_run(api, run_jobs):
    for n in range(5):
        make_recipient(external_id=f"p{n}", attributes={"plan": "pro" if n % 2 == 0 else "free"})
    audience = Audience(name="Pro plan", filter={"all": [{"field": "attributes.plan", "op": "=", "value": "pro"}]})
    db.session.add(audience)
    db.session.commit()
    body = {
        "audience": "Pro plan",
        "notification": {"type": "marketing", "category": "news", "title": "New feature", "channels": ["in_app"]},
    }
    response = api.post("/v1/notifications/bulk", json=body, headers={"Idempotency-Key": "launch-1"})
    assert response.status_code == 202 and "run_id" in response.json
    by_id = api.post(
        "/v1/notifications/bulk", json={**body, "audience": audience.id}, headers={"Idempotency-Key": "launch-1"}
    )
    assert by_id.status_code == 409  # a different body under the same key
    replay = api.post("/v1/notifications/bulk", json=body, headers={"Idempotency-Key": "launch-1"})
    assert replay.json["run_id"] == response.json["run_id"]
    run_jobs()
    run = db.session.get(Campaign, response.json["run_id"])
    assert run.status == "finished" and run.planned == 3 and run.audience_name == "Pro plan"
    assert count(Notification, Notification.origin == f"campaign:{run.id}") == 3
    assert api.post("/v1/notifications/bulk", json={**body, "audience": "Nope"}).status_code == 404
    stray = api.post("/v1/notifications/bulk", json={**body, "notification": {**body["notification"], "user_id": "p0"}})
    assert stray.status_code == 400


def test_a_topic_run_with_a_template_renders_it_per_subscriber(api, run_jobs):
    make_template(
        key="comment",
        variants={"en": {"in_app": {"title": "{{ data.who }} commented", "body": "Hi {{ recipient.id }}"}}},
    )
    api.put("/v1/topics/team", json={"name": "Team"})
    api.put("/v1/topics/team/subscribers", json={"user_ids": ["ana", "bo"]})
    response = api.post(
        "/v1/notifications",
        json={
            "topic": "team",
            "type": "transactional",
            "template": "comment",
            "data": {"who": "Cy"},
            "channels": ["in_app"],
        },
    )
    assert response.status_code == 202
    run_jobs()
    titles = dict(
        db.session.execute(
            select(Recipient.external_id, Notification.body).join(
                Notification, Notification.recipient_id == Recipient.id
            )
        ).all()
    )
    assert titles == {"ana": "Hi ana", "bo": "Hi bo"}
    assert set(
        dict(
            db.session.execute(
                select(Recipient.external_id, Notification.title).join(
                    Notification, Notification.recipient_id == Recipient.id
                )
            ).all()
        ).values()
    ) == {"Cy commented"}
