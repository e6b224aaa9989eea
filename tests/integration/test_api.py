"""The /v1 API against the real database and Redis, jobs run by Herald's worker."""

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import func, select

from app.extensions import db
from app.models import Delivery, IdempotencyKey, Notification, Preference, Recipient
from tests.conftest import ApiClient
from tests.factories import make_recipient, make_template, web_push_keys


def send(api, **fields):
    body = {"user_id": "ana", "type": "transactional", "title": "Hi", "body": "There", "channels": ["in_app"]}
    body.update(fields)
    return api.post("/v1/notifications", json=body)


def statuses(api, notification_id):
    return {
        d["channel"]: (d["status"], d["reason"])
        for d in api.get(f"/v1/notifications/{notification_id}").json["deliveries"]
    }


def test_missing_or_unknown_key_is_401(client, api_key):
    assert client.post("/v1/notifications", json={}).status_code == 401
    response = client.post("/v1/notifications", json={}, headers={"Authorization": "Bearer hk_nope"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_put_user_creates_then_updates_only_given_fields(api):
    created = api.put(
        "/v1/users/ana", json={"email": "ana@example.com", "timezone": "Asia/Singapore", "attributes": {"plan": "pro"}}
    )
    assert created.status_code == 201
    updated = api.put("/v1/users/ana", json={"locale": "pt-BR", "quiet_hours": {"start": "22:00", "end": "07:00"}})
    assert updated.status_code == 200
    assert updated.json["email"] == "ana@example.com" and updated.json["attributes"] == {"plan": "pro"}
    assert updated.json["quiet_hours"] == {"start": "22:00", "end": "07:00"} and updated.json["locale"] == "pt-BR"


def test_bad_fields_are_400_with_each_field_named(api):
    response = api.put(
        "/v1/users/ana",
        json={"phone": "555-1234", "timezone": "Mars/Base", "quiet_hours": {"start": "25:00", "end": "07:00"}},
    )
    assert response.status_code == 400
    assert {f["field"] for f in response.json["error"]["fields"]} == {"phone", "timezone", "quiet_hours.start"}


def test_non_object_body_is_400(api):
    response = api.post("/v1/notifications", data="[1,2]", content_type="application/json")
    assert response.status_code == 400 and response.json["error"]["fields"][0]["field"] == "(body)"


def test_unknown_user_and_unknown_template_are_404(api):
    assert send(api, user_id="ghost").status_code == 404
    make_recipient(external_id="ana")
    response = send(api, template="nope", title=None, body=None)
    assert response.status_code == 404 and response.json["error"]["code"] == "unknown_template"
    assert "'nope'" in response.json["error"]["message"]


def test_the_api_neither_opens_nor_sets_the_cookie_session(client, api_key):
    make_recipient(external_id="ana")
    client.set_cookie("session", "a browser's stale cookie")  # API keys authenticate /v1; a cookie counts for nothing
    response = send(ApiClient(client, api_key))
    assert response.status_code == 202
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.vary
    assert "X-RateLimit-Limit" not in response.headers  # the per-key limit is Herald's own, not Flask-Limiter's


def test_a_keyed_send_to_an_unknown_user_reserves_nothing(api):
    # On PostgreSQL the notification and its key are one statement: the refused row takes the reservation with it.
    assert send(api, user_id="ghost", idempotency_key="order-9").status_code == 404
    assert db.session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0
    make_recipient(external_id="ghost")
    assert send(api, user_id="ghost", idempotency_key="order-9").status_code == 202


def test_accepted_notification_is_durable_before_the_202(api):
    make_recipient(external_id="ana")
    response = send(api)
    assert response.status_code == 202 and response.json["status"] == "accepted"
    assert db.session.get(Notification, response.json["id"]) is not None


def test_in_app_notification_reaches_the_inbox_with_events(api, run_jobs):
    make_recipient(external_id="ana")
    notification_id = send(api).json["id"]
    run_jobs()
    detail = api.get(f"/v1/notifications/{notification_id}").json
    [delivery] = detail["deliveries"]
    assert delivery["status"] == "DELIVERED" and delivery["attempts"] == 1
    assert [e["status"] for e in delivery["events"]] == ["PENDING", "SENDING", "DELIVERED"]
    inbox = api.get("/v1/users/ana/notifications").json
    assert [i["id"] for i in inbox["items"]] == [notification_id] and inbox["unread_count"] == 1


def test_same_key_same_body_answers_the_same_and_sends_once(api, run_jobs):
    make_recipient(external_id="ana")
    first = send(api, idempotency_key="order-1")
    second = api.post(
        "/v1/notifications",
        json={"user_id": "ana", "type": "transactional", "title": "Hi", "body": "There", "channels": ["in_app"]},
        headers={"Idempotency-Key": "order-1"},
    )
    assert first.status_code == second.status_code == 202
    assert first.json == second.json
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


def test_same_key_different_body_is_409(api):
    make_recipient(external_id="ana")
    assert send(api, idempotency_key="order-1").status_code == 202
    response = send(api, idempotency_key="order-1", body="Something else")
    assert response.status_code == 409 and response.json["error"]["code"] == "idempotency_conflict"


def test_idempotency_key_expires_after_24_hours(api):
    make_recipient(external_id="ana")
    first = send(api, idempotency_key="order-1").json["id"]
    reservation = db.session.scalar(select(IdempotencyKey))
    reservation.created_at = datetime.now(UTC) - timedelta(hours=25)
    db.session.commit()
    second = send(api, idempotency_key="order-1", body="new day").json["id"]
    assert first != second


def test_rate_limit_is_per_key_with_retry_after(client, app):
    from app.api.keys import create_api_key

    make_recipient(external_id="ana")
    _row, slow_key = create_api_key("slow", rate_limit="2/minute")
    _row, other_key = create_api_key("other")
    headers = {"Authorization": f"Bearer {slow_key}"}
    codes = [client.get("/v1/users/ana", headers=headers).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = client.get("/v1/users/ana", headers=headers)
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert client.get("/v1/users/ana", headers={"Authorization": f"Bearer {other_key}"}).status_code == 200


def test_preferences_round_trip_and_take_effect_on_the_next_notification(api, run_jobs):
    make_recipient(external_id="ana")
    response = api.put(
        "/v1/users/ana/preferences",
        json={"preferences": [{"channel": "in_app", "category": "promotions", "enabled": False}]},
    )
    assert response.status_code == 200
    assert response.json["preferences"] == [{"channel": "in_app", "category": "promotions", "enabled": False}]
    marketing = send(api, type="marketing", category="promotions").json["id"]
    receipt = send(api, type="transactional", category="receipts").json["id"]
    run_jobs()
    assert statuses(api, marketing) == {"in_app": ("SUPPRESSED", "opted_out")}
    assert statuses(api, receipt) == {"in_app": ("DELIVERED", None)}


def test_hard_stop_suppresses_even_security(api, run_jobs):
    make_recipient(external_id="ana")
    api.put("/v1/users/ana/preferences", json={"hard_stop": True})
    notification_id = send(api, type="security", category="login").json["id"]
    run_jobs()
    assert statuses(api, notification_id) == {"in_app": ("SUPPRESSED", "hard_stop")}


def test_quiet_hours_defer_push_but_not_in_app(api, run_jobs):
    now_utc = datetime.now(UTC)
    start = (now_utc - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (now_utc + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    make_recipient(external_id="ana", timezone="UTC", quiet_start=start, quiet_end=end, phone="+14155552671")
    notification_id = send(api, channels=["in_app", "sms"]).json["id"]
    run_jobs()
    sms = db.session.scalar(
        select(Delivery).where(Delivery.notification_id == notification_id, Delivery.channel == "sms")
    )
    assert sms.status == "PENDING" and sms.reason == "quiet_hours"
    assert sms.not_before > now_utc + timedelta(hours=1)
    assert statuses(api, notification_id)["in_app"] == ("DELIVERED", None)


def test_marketing_frequency_cap_applies_per_recipient(api, run_jobs, app):
    make_recipient(external_id="ana")
    ids = [send(api, type="marketing", category="promotions", body=f"offer {n}").json["id"] for n in range(4)]
    for _ in ids:  # route one at a time, in order
        run_jobs()
    reasons = [statuses(api, n)["in_app"] for n in ids]
    assert reasons[:3] == [("DELIVERED", None)] * 3 and reasons[3] == ("SUPPRESSED", "frequency_cap")


def test_devices_register_move_between_recipients_and_delete(api):
    make_recipient(external_id="ana")
    make_recipient(external_id="bob")
    token = "ab" * 32
    first = api.post("/v1/users/ana/devices", json={"platform": "ios", "token": token})
    assert first.status_code == 201
    moved = api.post("/v1/users/bob/devices", json={"platform": "ios", "token": token})
    assert moved.status_code == 200 and moved.json["id"] == first.json["id"]
    assert api.delete(f"/v1/users/ana/devices/{first.json['id']}").status_code == 404
    assert api.delete(f"/v1/users/bob/devices/{first.json['id']}").status_code == 204


def test_web_push_subscription_on_private_host_is_400(api):
    make_recipient(external_id="ana")
    response = api.post(
        "/v1/users/ana/devices",
        json={"platform": "web", "subscription": {"endpoint": "https://192.168.1.10/push", "keys": web_push_keys()}},
    )
    assert response.status_code == 400 and response.json["error"]["fields"][0]["field"] == "subscription.endpoint"


def test_web_push_keys_that_are_not_a_p256_point_are_400(api):
    make_recipient(external_id="ana")
    keys = web_push_keys()
    response = api.post(
        "/v1/users/ana/devices",
        json={
            "platform": "web",
            "subscription": {"endpoint": "https://push.example.com/sub/1", "keys": {**keys, "p256dh": "B" * 87}},
        },
    )
    assert response.status_code == 400
    assert response.json["error"]["fields"][0]["field"] == "subscription.keys.p256dh"
    response = api.post(
        "/v1/users/ana/devices",
        json={
            "platform": "web",
            "subscription": {"endpoint": "https://push.example.com/sub/1", "keys": {**keys, "auth": "A" * 24}},
        },
    )
    assert response.json["error"]["fields"][0]["field"] == "subscription.keys.auth"


def test_erasing_a_user_removes_their_data_and_nothing_more_is_sent(api, run_jobs):
    make_recipient(external_id="ana", email="ana@example.com")
    pending = send(api).json["id"]
    assert api.delete("/v1/users/ana").status_code == 204
    run_jobs()  # the queued routing job finds nothing to send
    assert db.session.scalar(select(func.count()).select_from(Recipient)) == 0
    assert db.session.get(Notification, pending) is None
    assert send(api).status_code == 404
    assert api.get("/v1/users/ana").status_code == 404


def test_inbox_pages_with_an_opaque_cursor_and_read_state(api, run_jobs):
    make_recipient(external_id="ana")
    ids = [send(api, body=f"n{n}").json["id"] for n in range(5)]
    run_jobs()
    first = api.get("/v1/users/ana/notifications?limit=2").json
    second = api.get(f"/v1/users/ana/notifications?limit=2&cursor={first['next_cursor']}").json
    third = api.get(f"/v1/users/ana/notifications?limit=2&cursor={second['next_cursor']}").json
    seen = [i["id"] for i in first["items"] + second["items"] + third["items"]]
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 5 and third["next_cursor"] is None
    assert api.patch(f"/v1/notifications/{seen[0]}/read").json["read"] is True
    unread = api.get("/v1/users/ana/notifications?unread_only=true").json
    assert seen[0] not in [i["id"] for i in unread["items"]] and unread["unread_count"] == 4
    assert api.post("/v1/users/ana/notifications/read-all").json == {"marked_read": 4}
    assert api.get("/v1/users/ana/notifications").json["unread_count"] == 0


def test_bad_inbox_query_is_400(api):
    make_recipient(external_id="ana")
    assert api.get("/v1/users/ana/notifications?limit=500").status_code == 400
    assert api.get("/v1/users/ana/notifications?cursor=garbage").json["error"]["fields"][0]["field"] == "cursor"


def test_template_renders_per_locale_with_attributes(api, run_jobs):
    make_template(
        "balance",
        variants={
            "en": {"in_app": {"title": "Low balance", "body": "You have {{ recipient.attributes.balance }}"}},
            "es": {"in_app": {"title": "Saldo bajo", "body": "Tienes {{ recipient.attributes.balance }}"}},
        },
    )
    make_recipient(external_id="ana", locale="es-MX", attributes={"balance": 12})
    notification_id = send(api, template="balance", title=None, body=None).json["id"]
    run_jobs()
    assert statuses(api, notification_id)["in_app"][0] == "DELIVERED"


def test_template_missing_variable_fails_the_delivery_with_the_reason(api, run_jobs):
    make_template("broken", variants={"en": {"in_app": {"title": "Hi", "body": "{{ recipient.attributes.nickname }}"}}})
    make_recipient(external_id="ana")
    notification_id = send(api, template="broken", title=None, body=None).json["id"]
    run_jobs()
    [delivery] = api.get(f"/v1/notifications/{notification_id}").json["deliveries"]
    assert delivery["status"] == "FAILED" and delivery["error_code"] == "render_error"
    assert "nickname" in delivery["last_error"]


def test_openapi_document_describes_the_validating_schemas(client):
    spec = client.get("/v1/openapi.json").json
    assert spec["openapi"].startswith("3.")
    channel_enum = spec["components"]["schemas"]["NotificationCreate"]["properties"]["channels"]["items"]["enum"]
    assert channel_enum == ["in_app", "email", "sms", "push", "web_push"]
    assert "post" in spec["paths"]["/v1/notifications"]
    assert client.get("/v1/docs").status_code == 200


def test_preference_rows_for_unsubscribe_are_created(app, client):
    from app.delivery.unsubscribe import unsubscribe_token

    recipient = make_recipient(external_id="ana")
    token = unsubscribe_token(app.config["SECRET_KEY"], "ana", "promotions")
    assert client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert db.session.get(Preference, (recipient.id, "email", "promotions")).enabled is False
    assert client.post("/unsubscribe/forged-token", data={"List-Unsubscribe": "One-Click"}).status_code == 404


def test_time_is_stored_as_utc(app):
    recipient = make_recipient(quiet_start=time(22, 0), quiet_end=time(7, 0))
    assert recipient.created_at.tzinfo is not None


def test_body_over_a_requested_channels_limit_is_400(api):
    make_recipient(external_id="ana")
    response = send(api, channels=["in_app", "sms"], body="x" * 1700)
    assert response.status_code == 400
    assert response.json["error"]["fields"] == [
        {"field": "body", "message": "body has 1700 characters; sms accepts at most 1600"}
    ]
    assert send(api, channels=["in_app"], body="x" * 1700).status_code == 202
