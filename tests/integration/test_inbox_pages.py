"""The end-user inbox pages against the real database and Redis: sign-in, list, actions, preferences, push opt-in, view-as."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.channels.vapid import application_server_key
from app.extensions import db
from app.inbox.auth import SESSION_RECIPIENT, user_token
from app.models import Delivery, Device, Notification, Preference, Recipient
from app.models.types import utcnow
from app.realtime.publish import user_channel
from app.redis_client import get_redis
from tests.factories import make_notification, make_recipient, make_staff, make_template, web_push_keys

SUBSCRIPTION = {"endpoint": "https://fcm.googleapis.com/fcm/send/abc123", "keys": web_push_keys()}


def sign_in(client, app, user_id: str):
    return client.get(f"/inbox?user={user_id}&token={user_token(app.config['INBOX_SECRET'], user_id)}")


def delivered(recipient, minutes_ago: float = 0, **fields):
    return make_notification(recipient, inbox_at=utcnow() - timedelta(minutes=minutes_ago), **fields)


def entry_headlines(html: str) -> list[str]:
    return re.findall(r'data-testid="entry-headline">([^<]*)<', html)


def is_read(notification_id: str) -> bool:
    db.session.expire_all()
    return db.session.get(Notification, notification_id).read_at is not None


# --- sign-in --------------------------------------------------------------------------------------


def test_valid_token_opens_a_session_and_drops_the_token_from_the_url(app, client):
    ana = make_recipient(external_id="ana")
    response = sign_in(client, app, "ana")
    assert response.status_code == 303 and response.headers["Location"] == "/inbox"
    with client.session_transaction() as session:
        assert session[SESSION_RECIPIENT] == ana.id
    assert client.get("/inbox").status_code == 200


def test_first_visit_of_a_vouched_user_creates_the_recipient(app, client):
    assert sign_in(client, app, "newcomer").status_code == 303
    assert db.session.scalar(select(Recipient).where(Recipient.external_id == "newcomer")) is not None


@pytest.mark.parametrize("query", ["user=ana&token=" + "0" * 64, "user=ana", "token=abc", "user=ana&token="])
def test_bad_or_missing_token_is_403_and_opens_nothing(app, client, query):
    make_recipient(external_id="ana")
    response = client.get(f"/inbox?{query}")
    assert response.status_code == 403 and b"not valid" in response.data
    with client.session_transaction() as session:
        assert SESSION_RECIPIENT not in session
    assert client.get("/inbox").status_code == 401


def test_a_token_for_bob_does_not_open_anas_inbox(app, client):
    make_recipient(external_id="ana")
    make_recipient(external_id="bob")
    bobs = user_token(app.config["INBOX_SECRET"], "bob")
    assert client.get(f"/inbox?user=ana&token={bobs}").status_code == 403


def test_every_inbox_page_needs_the_session(client):
    for method, path in [
        ("get", "/inbox"),
        ("get", "/inbox/preferences"),
        ("post", "/inbox/read"),
        ("post", "/inbox/read-all"),
        ("post", "/inbox/archive"),
        ("post", "/inbox/open"),
        ("post", "/inbox/preferences"),
        ("get", "/inbox/push-key"),
        ("post", "/inbox/devices"),
        ("delete", "/inbox/devices"),
    ]:
        assert getattr(client, method)(path).status_code == 401, path


def test_a_session_surviving_its_recipients_erasure_opens_nothing(app, client):
    ana = make_recipient(external_id="ana")
    sign_in(client, app, "ana")
    db.session.delete(ana)
    db.session.commit()
    make_recipient(external_id="someone-else")
    assert client.get("/inbox").status_code == 401


# --- the list -------------------------------------------------------------------------------------


def test_newest_first_unread_marked_and_count_in_the_badge(app, client):
    ana = make_recipient(external_id="ana")
    delivered(ana, 30, title="Oldest")
    delivered(ana, 20, title="Middle", read_at=utcnow())
    delivered(ana, 10, title="Newest")
    make_notification(ana, title="Not delivered in-app yet")
    sign_in(client, app, "ana")
    html = client.get("/inbox").get_data(as_text=True)
    assert entry_headlines(html) == ["Newest", "Middle", "Oldest"]
    assert html.count("inbox-entry--unread") == 2
    assert re.search(r'data-testid="unread-count">2<', html)


def test_load_more_pages_by_cursor_as_a_plain_link_and_as_an_htmx_partial(app, client):
    ana = make_recipient(external_id="ana")
    for n in range(25):
        delivered(ana, 100 - n, title=f"N{n:02d}")
    sign_in(client, app, "ana")
    first = client.get("/inbox").get_data(as_text=True)
    assert entry_headlines(first) == [f"N{n:02d}" for n in range(24, 4, -1)]
    more = re.search(r'<a href="(/inbox\?cursor=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(more).get_data(as_text=True)
    assert "<html" in second and entry_headlines(second) == ["N04", "N03", "N02", "N01", "N00"]
    partial = client.get(more, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in partial and entry_headlines(partial) == ["N04", "N03", "N02", "N01", "N00"]
    assert "Load more" not in partial and 'hx-swap-oob="true"' in partial


def test_bad_cursor_is_a_400_page(app, client):
    make_recipient(external_id="ana")
    sign_in(client, app, "ana")
    assert client.get("/inbox?cursor=garbage").status_code == 400


def test_unread_filter_shows_only_unread(app, client):
    ana = make_recipient(external_id="ana")
    delivered(ana, 2, title="Read one", read_at=utcnow())
    delivered(ana, 1, title="Unread one")
    sign_in(client, app, "ana")
    assert entry_headlines(client.get("/inbox?filter=unread").get_data(as_text=True)) == ["Unread one"]


def test_collapsed_group_shows_actors_and_a_count(app, client):
    ana = make_recipient(external_id="ana")
    for n, actor in enumerate(["Ed", "Di", "Cy", "Bo", "Ana"]):
        delivered(
            ana,
            10 - n,
            title=f"{actor} liked your photo",
            collapse_key="photo-1",
            data={"actor": actor, "action": "liked your photo"},
        )
    delivered(ana, 20, title="Welcome")
    sign_in(client, app, "ana")
    html = client.get("/inbox").get_data(as_text=True)
    assert entry_headlines(html) == ["Ana and 4 others liked your photo", "Welcome"]
    assert re.search(r'data-testid="entry-count"[^>]*>5<', html)


def test_a_group_is_whole_on_the_page_of_its_newest_member_and_never_shown_again(app, client):
    ana = make_recipient(external_id="ana")
    for n in range(30):  # one a minute, "Note 29" the newest
        delivered(ana, 100 - n, title=f"Note {n}")
    # Likes at minutes 1, 75 and 98 ago: the newest sits on the first page, the older two where page two would be.
    for actor, minutes in (("Ana", 1), ("Bo", 75), ("Cy", 98)):
        delivered(
            ana,
            minutes,
            title=f"{actor} liked your photo",
            collapse_key="photo-1",
            data={"actor": actor, "action": "liked your photo"},
        )
    sign_in(client, app, "ana")

    first = client.get("/inbox").get_data(as_text=True)
    assert entry_headlines(first)[0] == "Ana and 2 others liked your photo"
    assert re.search(r'data-testid="entry-count"[^>]*>3<', first)
    assert len(entry_headlines(first)) == 20
    cursor = re.search(r'cursor=([^&"]+)', first).group(1)
    second = entry_headlines(client.get(f"/inbox?cursor={cursor}").get_data(as_text=True))
    assert second == [f"Note {n}" for n in range(10, -1, -1)], "the rest, with no trace of the group"


def test_times_are_relative_in_the_recipients_locale_and_absolute_in_their_zone(app, client):
    ana = make_recipient(external_id="ana", locale="pt-BR", timezone="Asia/Tokyo")
    note = delivered(ana, 5, title="Oi")
    sign_in(client, app, "ana")
    html = client.get("/inbox").get_data(as_text=True)
    assert "há 5 minutos" in html
    tokyo_hour = (note.inbox_at + timedelta(hours=9)).strftime("%H:%M")
    assert tokyo_hour in re.search(r'<time[^>]*title="([^"]+)"', html).group(1)


# --- actions --------------------------------------------------------------------------------------


def test_mark_one_read_without_js_redirects_and_with_htmx_returns_the_entry(app, client):
    ana = make_recipient(external_id="ana")
    first, second = delivered(ana, 2, title="One"), delivered(ana, 1, title="Two")
    sign_in(client, app, "ana")
    response = client.post("/inbox/read", data={"ids": [first.id]})
    assert response.status_code == 303 and is_read(first.id) and not is_read(second.id)
    partial = client.post("/inbox/read", data={"ids": [second.id]}, headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert is_read(second.id) and "inbox-entry--unread" not in partial and "Two" in partial
    assert (
        re.search(r'id="unread-badge"[^>]*hx-swap-oob="true"', partial) and 'data-testid="unread-count">0<' in partial
    )


def test_reading_publishes_a_read_event_on_the_users_channel(app, client):
    ana = make_recipient(external_id="ana")
    note = delivered(ana, 1)
    sign_in(client, app, "ana")
    pubsub = get_redis().pubsub()
    pubsub.subscribe(user_channel(ana.id))
    pubsub.get_message(timeout=1)
    client.post("/inbox/read", data={"ids": [note.id]})
    message = pubsub.get_message(timeout=2)
    pubsub.close()
    assert json.loads(message["data"]) == {"data": {"ids": [note.id], "unread": 0}, "type": "read"}


def test_mark_all_read_and_archive(app, client):
    ana = make_recipient(external_id="ana")
    notes = [delivered(ana, n) for n in range(3)]
    sign_in(client, app, "ana")
    assert client.post("/inbox/read-all").status_code == 303
    assert all(is_read(n.id) for n in notes)
    client.post("/inbox/archive", data={"ids": [notes[0].id]}, headers={"HX-Request": "true"})
    db.session.expire_all()
    assert db.session.get(Notification, notes[0].id).archived_at is not None
    assert len(entry_headlines(client.get("/inbox").get_data(as_text=True))) == 2


def test_no_one_can_read_or_archive_someone_elses_notifications(app, client):
    make_recipient(external_id="ana")
    bob = make_recipient(external_id="bob")
    bobs = delivered(bob, 1, title="Bob's secret")
    sign_in(client, app, "ana")
    client.post("/inbox/read", data={"ids": [bobs.id]})
    client.post("/inbox/archive", data={"ids": [bobs.id]})
    response = client.post("/inbox/open", data={"ids": [bobs.id]})
    db.session.expire_all()
    bobs = db.session.get(Notification, bobs.id)
    assert bobs.read_at is None and bobs.archived_at is None
    assert response.headers["Location"] == "/inbox"
    assert "Bob&#39;s secret" not in client.get("/inbox").get_data(as_text=True)


def test_open_marks_read_and_follows_only_safe_deep_links(app, client):
    ana = make_recipient(external_id="ana")
    safe = delivered(ana, 2, title="Order", data={"url": "https://shop.example.com/orders/5"})
    evil = delivered(ana, 1, title="Evil", data={"url": "javascript:alert(document.cookie)"})
    sign_in(client, app, "ana")
    html = client.get("/inbox").get_data(as_text=True)
    assert "javascript:" not in html and html.count(">Open</button>") == 1
    response = client.post("/inbox/open", data={"ids": [safe.id]})
    assert (
        response.status_code == 303
        and response.headers["Location"] == "https://shop.example.com/orders/5"
        and is_read(safe.id)
    )
    assert client.post("/inbox/open", data={"ids": [evil.id]}).headers["Location"] == "/inbox"


# --- preferences ----------------------------------------------------------------------------------


def test_preferences_list_received_and_template_categories_and_lock_security(app, client):
    ana = make_recipient(external_id="ana")
    delivered(ana, 1, category="orders")
    make_template("promo", category="promotions", type="marketing")
    make_template("login_alert", category="account_security", type="security")
    sign_in(client, app, "ana")
    html = client.get("/inbox/preferences").get_data(as_text=True)
    assert 'value="in_app|orders"' in html and 'value="email|promotions"' in html
    assert "Account security" in html and 'value="in_app|account_security"' not in html
    assert "Security notices always reach you" in html and 'value="email|*"' in html


def test_a_switch_turned_off_on_the_page_suppresses_the_very_next_notification(app, client, api, run_jobs):
    make_recipient(external_id="ana")
    make_template("promo", category="promotions", type="marketing")
    sign_in(client, app, "ana")
    shown = [f"{c}|{k}" for c in ("in_app", "email") for k in ("*", "promotions")]
    checked = [v for v in shown if v != "in_app|promotions"]
    response = client.post("/inbox/preferences", data={"shown": shown, "pref": checked, "timezone": "Europe/Lisbon"})
    assert response.status_code == 303
    sent = api.post(
        "/v1/notifications",
        json={
            "user_id": "ana",
            "type": "marketing",
            "category": "promotions",
            "title": "Sale",
            "body": "50% off",
            "channels": ["in_app"],
        },
    ).json["id"]
    run_jobs()
    delivery = db.session.scalar(select(Delivery).where(Delivery.notification_id == sent))
    assert (delivery.status, delivery.reason) == ("SUPPRESSED", "opted_out")
    assert db.session.get(Notification, sent).inbox_at is None


def test_pause_everything_and_quiet_hours_in_the_users_zone_are_saved(app, client):
    ana = make_recipient(external_id="ana", timezone=None)
    sign_in(client, app, "ana")
    client.post(
        "/inbox/preferences",
        data={"pause": "on", "quiet_start": "22:00", "quiet_end": "07:30", "timezone": "America/Sao_Paulo"},
    )
    db.session.expire_all()
    ana = db.session.get(Recipient, ana.id)
    assert ana.hard_stop and ana.timezone == "America/Sao_Paulo"
    assert (ana.quiet_start.strftime("%H:%M"), ana.quiet_end.strftime("%H:%M")) == ("22:00", "07:30")
    client.post("/inbox/preferences", data={"timezone": "America/Sao_Paulo"})
    db.session.expire_all()
    ana = db.session.get(Recipient, ana.id)
    assert not ana.hard_stop and ana.quiet_start is None


def test_bad_preferences_are_a_400_with_the_reason_and_change_nothing(app, client):
    make_recipient(external_id="ana")
    sign_in(client, app, "ana")
    response = client.post("/inbox/preferences", data={"quiet_start": "22:00", "timezone": "Europe/Lisbon"})
    assert response.status_code == 400 and b"both a start and an end" in response.data
    response = client.post("/inbox/preferences", data={"timezone": "Mars/Base"})
    assert response.status_code == 400 and b"Mars/Base" in response.data
    response = client.post("/inbox/preferences", data={"shown": ["pigeon|orders"], "pref": ["pigeon|orders"]})
    assert response.status_code == 400
    assert db.session.scalar(select(Preference)) is None


# --- web push opt-in ------------------------------------------------------------------------------


def test_browser_subscription_is_saved_for_the_session_user_and_removed(app, client):
    ana = make_recipient(external_id="ana")
    sign_in(client, app, "ana")
    assert client.post("/inbox/devices", json=SUBSCRIPTION).status_code == 201
    device = db.session.scalar(select(Device))
    assert (device.recipient_id, device.platform, device.token) == (ana.id, "web", SUBSCRIPTION["endpoint"])
    assert client.delete("/inbox/devices", json={"endpoint": SUBSCRIPTION["endpoint"]}).status_code == 204
    assert db.session.scalar(select(Device)) is None


def test_bad_or_private_subscriptions_are_refused(app, client):
    make_recipient(external_id="ana")
    sign_in(client, app, "ana")
    assert client.post("/inbox/devices", json={"endpoint": "https://x.example.com"}).status_code == 400
    private = {**SUBSCRIPTION, "endpoint": "https://10.0.0.5/push"}
    assert client.post("/inbox/devices", json=private).status_code == 400


def test_device_post_needs_the_csrf_header(app, client):
    make_recipient(external_id="ana")
    sign_in(client, app, "ana")
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        page = client.get("/inbox").get_data(as_text=True)
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
        assert client.post("/inbox/devices", json=SUBSCRIPTION).status_code == 400
        assert client.post("/inbox/devices", json=SUBSCRIPTION, headers={"X-CSRFToken": token}).status_code == 201
    finally:
        app.config["WTF_CSRF_ENABLED"] = False


def test_push_key_and_service_worker_are_served(app, client):
    make_recipient(external_id="ana")
    sign_in(client, app, "ana")
    assert client.get("/inbox/push-key").json == {"applicationServerKey": application_server_key(app.instance_path)}
    worker = client.get("/sw.js")
    assert worker.status_code == 200 and worker.headers["Service-Worker-Allowed"] == "/"
    assert worker.mimetype == "text/javascript" and b"notificationclick" in worker.data


# --- staff "view as" ------------------------------------------------------------------------------


def staff_login(client, role="marketer"):
    make_staff(email="staff@example.com", password="correct horse battery", role=role)
    assert (
        client.post(
            "/console/login", data={"email": "staff@example.com", "password": "correct horse battery"}
        ).status_code
        == 302
    )


def test_view_as_needs_a_staff_session(client):
    make_recipient(external_id="ana")
    response = client.get("/console/recipients/ana/inbox-view")
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]


def test_staff_see_the_inbox_read_only_and_writes_are_refused(app, client):
    ana = make_recipient(external_id="ana")
    note = delivered(ana, 1, title="Private to Ana", data={"url": "/orders/1"})
    staff_login(client)
    html = client.get("/console/recipients/ana/inbox-view").get_data(as_text=True)
    assert entry_headlines(html) == ["Private to Ana"] and 'data-testid="view-as-banner"' in html
    assert "data-inbox-stream" not in html and "/inbox/read" not in html
    assert html.count("disabled aria-disabled") >= 3
    for action in ("read", "read_all", "archive", "open"):
        assert client.post(f"/console/recipients/ana/inbox-view/{action}", data={"ids": [note.id]}).status_code == 403
    assert not is_read(note.id)
    with client.session_transaction() as session:
        assert SESSION_RECIPIENT not in session
    assert client.post("/inbox/read", data={"ids": [note.id]}).status_code == 401
    assert client.get("/console/recipients/nobody/inbox-view").status_code == 404


def test_a_huge_group_loads_only_its_newest_members_up_to_the_group_limit(app, client, monkeypatch):
    from app.inbox import store

    monkeypatch.setattr(store, "GROUP_LIMIT", 3)
    ana = make_recipient(external_id="ana")
    likes = [delivered(ana, minutes, title=f"like {minutes}", collapse_key="photo-1") for minutes in range(1, 7)]
    items, _cursor = store.entries_page(ana.id, limit=20)
    assert [item.id for item in items] == [like.id for like in likes[:3]], "the head and the next two, newest first"
