"""Recipients in the console: search, the recipient page, admin-only opt-out edits, suppression, erasure, audit log."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.console.audit import record_change
from app.extensions import db
from app.models import AuditEntry, Delivery, DeliveryEvent, Device, Notification, Preference, Recipient, Suppression
from tests.factories import make_notification, make_recipient, make_staff

ADMIN, MARKETER, PASSWORD = "admin@example.com", "marketer@example.com", "correct horse battery"


@pytest.fixture
def staff(app):
    make_staff(email=ADMIN, password=PASSWORD, role="admin")
    make_staff(email=MARKETER, password=PASSWORD, role="marketer")


def sign_in(client, email):
    response = client.post("/console/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 302


@pytest.fixture
def admin(client, staff):
    sign_in(client, ADMIN)
    return client


@pytest.fixture
def marketer(client, staff):
    sign_in(client, MARKETER)
    return client


def audit_entries(action=None) -> list[AuditEntry]:
    db.session.expire_all()
    statement = select(AuditEntry).order_by(AuditEntry.id)
    if action:
        statement = statement.where(AuditEntry.action == action)
    return list(db.session.scalars(statement))


# --- search ----------------------------------------------------------------------------------------


def test_search_finds_recipients_by_prefix_of_user_id_email_or_phone(admin):
    make_recipient(external_id="ana", email="ana@example.com", phone="+351910000001")
    make_recipient(external_id="bruno", email="Bruno@Example.com", phone="+351920000002")
    make_recipient(external_id="carla", email="carla@other.org")

    def found(query):
        html = admin.get("/console/recipients", query_string={"q": query}).get_data(as_text=True)
        return [name for name in ("ana", "bruno", "carla") if f'/console/recipients/{name}"' in html]

    assert found("an") == ["ana"]
    assert found("bruno@EXAMPLE") == ["bruno"]  # email prefix ignores case
    assert found("+35192") == ["bruno"]
    assert found("example") == []  # prefix, not substring
    assert found("") == ["ana", "bruno", "carla"]


def test_search_escapes_like_wildcards(admin):
    make_recipient(external_id="a_b")
    make_recipient(external_id="axb")
    html = admin.get("/console/recipients?q=a_").get_data(as_text=True)
    assert '/console/recipients/a_b"' in html and '/console/recipients/axb"' not in html


def test_search_pages_results_and_htmx_gets_only_the_results_partial(admin):
    for n in range(30):
        make_recipient(external_id=f"user-{n:02d}")
    first = admin.get("/console/recipients?q=user-").get_data(as_text=True)
    assert '/console/recipients/user-24"' in first and '/console/recipients/user-25"' not in first
    assert "page=2" in first
    second = admin.get("/console/recipients?q=user-&page=2", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert '/console/recipients/user-29"' in second and '/console/recipients/user-00"' not in second
    assert second.lstrip().startswith('<section id="recipient-results"') and "<html" not in second


def test_search_box_is_an_htmx_active_search_that_pushes_the_url(admin):
    html = admin.get("/console/recipients").get_data(as_text=True)
    assert 'hx-trigger="search, keyup delay:200ms changed"' in html and 'hx-push-url="true"' in html


def test_anonymous_visitors_are_sent_to_sign_in(client):
    for path in ("/console/recipients", "/console/recipients/ana", "/console/suppressions", "/console/audit"):
        response = client.get(path)
        assert response.status_code == 302 and "/console/login" in response.headers["Location"], path
    assert client.post("/console/recipients/ana/preferences").status_code == 302


# --- the recipient page ----------------------------------------------------------------------------


def test_recipient_page_shows_profile_devices_preferences_and_history_with_events(admin):
    ana = make_recipient(external_id="ana", email="ana@example.com", attributes={"plan": "gold"})
    db.session.add_all(
        [
            Device(recipient_id=ana.id, platform="ios", token="tok-live", active=True),
            Device(
                recipient_id=ana.id,
                platform="android",
                token="tok-dead",
                active=False,
                deactivated_reason="token gone (410)",
            ),
            Preference(recipient_id=ana.id, channel="email", category="marketing", enabled=False),
        ]
    )
    older = make_notification(ana, title="Older one")
    newer = make_notification(ana, title="Newer one")
    newer.created_at = older.created_at.replace(year=older.created_at.year + 1)
    delivery = Delivery(notification_id=older.id, channel="email", status="FAILED", attempts=2, error_code="smtp_550")
    db.session.add(delivery)
    db.session.flush()
    db.session.add(DeliveryEvent(delivery_id=delivery.id, status="FAILED", detail="smtp_550: user unknown"))
    db.session.commit()

    html = admin.get("/console/recipients/ana").get_data(as_text=True)
    assert "ana@example.com" in html and "plan" in html and "gold" in html
    assert "tok-live" in html and "token gone (410)" in html
    assert 'data-testid="pref-email-marketing" data-enabled="off"' in html
    assert 'data-testid="pref-email-*" data-enabled="on"' in html
    assert html.index("Newer one") < html.index("Older one")
    assert "smtp_550: user unknown" in html
    assert "/console/recipients/ana/inbox-view" in html


def test_unknown_recipient_is_a_404(admin):
    assert admin.get("/console/recipients/nobody").status_code == 404


def test_history_pages_newest_first(admin):
    ana = make_recipient(external_id="ana")
    for n in range(12):
        make_notification(ana, title=f"note-{n:02d}")
    page2 = admin.get("/console/recipients/ana?page=2", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert page2.lstrip().startswith('<section id="history"')
    assert "note-01" in page2 and "note-00" in page2 and "note-11" not in page2


# --- marketers read, admins write ------------------------------------------------------------------


def test_marketer_sees_the_recipient_page_without_any_form(marketer):
    make_recipient(external_id="ana", email="ana@example.com")
    html = marketer.get("/console/recipients/ana").get_data(as_text=True)
    assert "ana@example.com" in html and 'data-testid="read-only"' in html
    assert '/preferences"' not in html and '/hard-stop"' not in html and '/erase"' not in html
    assert 'action="/console/suppressions' not in html


@pytest.mark.parametrize(
    "method,path,data",
    [
        ("post", "/console/recipients/ana/preferences", {"channel": "email", "category": "marketing", "enabled": "0"}),
        ("post", "/console/recipients/ana/hard-stop", {"enabled": "1"}),
        ("get", "/console/recipients/ana/erase", {}),
        ("post", "/console/recipients/ana/erase", {"confirm": "ana"}),
        ("post", "/console/suppressions", {"channel": "email", "address": "ana@example.com", "reason": "x"}),
        ("post", "/console/suppressions/1/delete", {}),
        ("get", "/console/audit", {}),
    ],
)
def test_marketer_is_refused_every_write(marketer, method, path, data):
    ana = make_recipient(external_id="ana", email="ana@example.com")
    db.session.add(Suppression(id=1, channel="sms", address="+351910000000", reason="STOP"))
    db.session.commit()
    response = getattr(marketer, method)(path, data=data)
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(Recipient, ana.id).hard_stop is False
    assert db.session.scalar(select(Preference)) is None
    assert [s.address for s in db.session.scalars(select(Suppression))] == ["+351910000000"]
    assert audit_entries() == []


def test_admin_turns_off_an_opt_in_and_the_audit_entry_has_before_and_after(admin):
    ana = make_recipient(external_id="ana")
    response = admin.post(
        "/console/recipients/ana/preferences", data={"channel": "email", "category": "marketing", "enabled": "0"}
    )
    assert response.status_code == 302
    assert db.session.get(Preference, (ana.id, "email", "marketing")).enabled is False
    admin.post(
        "/console/recipients/ana/preferences", data={"channel": "email", "category": "marketing", "enabled": "1"}
    )
    first, second = audit_entries("preference.set")
    assert (first.actor, first.target_type, first.target_id) == (ADMIN, "recipient", str(ana.id))
    assert first.before is None and first.after == {"channel": "email", "category": "marketing", "enabled": False}
    assert second.before == {"channel": "email", "category": "marketing", "enabled": False}
    assert second.after["enabled"] is True
    assert first.staff_user_id is not None


def test_preference_toggle_over_htmx_returns_the_updated_grid(admin):
    make_recipient(external_id="ana")
    html = admin.post(
        "/console/recipients/ana/preferences",
        headers={"HX-Request": "true"},
        data={"channel": "sms", "category": "*", "enabled": "0"},
    ).get_data(as_text=True)
    assert html.lstrip().startswith('<section id="preferences"')
    assert 'data-testid="pref-sms-*" data-enabled="off"' in html


def test_preference_toggle_rejects_an_unknown_channel_without_writing(admin):
    make_recipient(external_id="ana")
    response = admin.post(
        "/console/recipients/ana/preferences", data={"channel": "pigeon", "category": "x", "enabled": "0"}
    )
    assert response.status_code == 400
    assert db.session.scalar(select(Preference)) is None and audit_entries() == []


def test_admin_sets_and_lifts_the_hard_stop_with_audit(admin):
    ana = make_recipient(external_id="ana")
    admin.post("/console/recipients/ana/hard-stop", data={"enabled": "1"})
    db.session.expire_all()
    assert db.session.get(Recipient, ana.id).hard_stop is True
    admin.post("/console/recipients/ana/hard-stop", data={"enabled": "0"})
    on, off = audit_entries("recipient.hard_stop")
    assert (on.before, on.after) == ({"hard_stop": False}, {"hard_stop": True})
    assert (off.before, off.after) == ({"hard_stop": True}, {"hard_stop": False})


def test_admin_adds_and_removes_a_suppression_with_audit(admin):
    response = admin.post(
        "/console/suppressions", data={"channel": "email", "address": "ana@example.com", "reason": "complaint"}
    )
    assert response.status_code == 302
    entry = db.session.scalar(select(Suppression))
    assert (entry.channel, entry.address, entry.reason) == ("email", "ana@example.com", "complaint")
    assert "ana@example.com" in admin.get("/console/suppressions").get_data(as_text=True)
    assert "ana@example.com" in admin.get("/console/suppressions?q=ANA@").get_data(as_text=True)
    assert "ana@example.com" not in admin.get("/console/suppressions?q=bob").get_data(as_text=True)

    duplicate = admin.post(
        "/console/suppressions", data={"channel": "email", "address": "ana@example.com", "reason": "again"}
    )
    assert duplicate.status_code == 400 and "already suppressed" in duplicate.get_data(as_text=True)

    assert admin.post(f"/console/suppressions/{entry.id}/delete").status_code == 302
    db.session.expire_all()
    assert db.session.scalar(select(Suppression)) is None
    added, removed = audit_entries("suppression.add") + audit_entries("suppression.remove")
    assert added.before is None and added.after == {
        "channel": "email",
        "address": "ana@example.com",
        "reason": "complaint",
    }
    assert removed.before == added.after and removed.after is None


def test_suppression_form_shows_errors_next_to_fields(admin):
    response = admin.post("/console/suppressions", data={"channel": "email", "address": "", "reason": ""})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="address-errors"' in html and "Enter the address to suppress." in html
    assert 'id="reason-errors"' in html


def test_suppression_remove_returns_to_the_recipient_page_it_came_from(admin):
    make_recipient(external_id="ana", email="ana@example.com")
    admin.post("/console/suppressions", data={"channel": "email", "address": "ana@example.com", "reason": "x"})
    entry = db.session.scalar(select(Suppression))
    assert (
        "ana@example.com"
        in admin.get("/console/recipients/ana").get_data(as_text=True).split("Suppressed addresses")[1]
    )
    response = admin.post(f"/console/suppressions/{entry.id}/delete", data={"back": "/console/recipients/ana"})
    assert response.headers["Location"] == "/console/recipients/ana"
    evil = admin.post(
        "/console/suppressions", data={"channel": "sms", "address": "1", "reason": "x", "back": "https://evil.example/"}
    )
    assert evil.headers["Location"] == "/console/suppressions"


def test_erase_asks_for_confirmation_then_deletes_everything(admin):
    ana = make_recipient(external_id="ana")
    make_notification(ana)
    page = admin.get("/console/recipients/ana/erase")
    assert page.status_code == 200 and "Erase for good" in page.get_data(as_text=True)
    wrong = admin.post("/console/recipients/ana/erase", data={"confirm": "bob"})
    assert wrong.status_code == 400 and "not this recipient" in wrong.get_data(as_text=True)
    assert db.session.get(Recipient, ana.id) is not None

    done = admin.post("/console/recipients/ana/erase", data={"confirm": "ana"})
    assert done.status_code == 302
    db.session.expire_all()
    assert db.session.scalar(select(Recipient)) is None and db.session.scalar(select(Notification)) is None
    [entry] = audit_entries("recipient.erase")
    assert (entry.actor, entry.target_id) == (ADMIN, str(ana.id))


# --- the audit log page ----------------------------------------------------------------------------


def test_audit_log_filters_by_actor_and_target_and_pages(admin):
    for n in range(30):
        record_change("ops@example.com", "thing.change", "thing", n, {"n": n}, {"n": n + 1})
    record_change("other@example.com", "thing.change", "widget", 7, None, {"x": 1})
    db.session.commit()

    page1 = admin.get("/console/audit?actor=ops@").get_data(as_text=True)
    assert "thing #29<" in page1 and "thing #5<" in page1 and "thing #4<" not in page1
    assert "other@example.com" not in page1
    page2 = admin.get("/console/audit?actor=ops@&page=2", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert page2.lstrip().startswith('<section id="audit-rows"') and "thing #0<" in page2

    widget = admin.get("/console/audit?target_type=widget&target_id=7").get_data(as_text=True)
    assert "other@example.com" in widget and "ops@example.com" not in widget
    assert "{&#34;x&#34;: 1}" in widget or '{"x": 1}' in widget


def test_record_change_stores_dates_as_iso_text_and_commits_with_the_caller(app):
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record_change("cli", "x.y", "x", 1, {"at": moment}, {"tags": ("a", "b")})
    db.session.rollback()
    assert audit_entries() == [], "nothing is stored unless the caller commits"
    record_change("cli", "x.y", "x", 1, {"at": moment}, {"tags": ("a", "b")})
    db.session.commit()
    [entry] = audit_entries()
    assert entry.before == {"at": "2026-01-02T03:04:05+00:00"} and entry.after == {"tags": ["a", "b"]}
    assert entry.staff_user_id is None and entry.actor == "cli"


# --- opening a user's inbox ------------------------------------------------------------------------


def test_admin_opens_a_users_inbox_through_its_signed_link_and_the_audit_log_says_who(admin):
    ana = make_recipient(external_id="ana maria")
    make_notification(ana, title="Your order shipped", inbox_at=datetime.now(UTC))
    page = admin.get("/console/recipients/ana%20maria").get_data(as_text=True)
    assert "Open this user&#39;s inbox" in page or "Open this user's inbox" in page

    opened = admin.post("/console/recipients/ana%20maria/open-inbox")

    assert opened.status_code == 303 and opened.headers["Location"].startswith("/inbox?user=ana%20maria&token=")
    inbox = admin.get(opened.headers["Location"], follow_redirects=True)
    assert inbox.status_code == 200 and "Your order shipped" in inbox.get_data(as_text=True)
    [entry] = audit_entries("recipient.open_inbox")
    assert entry.actor == ADMIN and entry.target_id == str(ana.id) and entry.after == {"user_id": "ana maria"}


def test_a_marketer_cannot_open_a_users_inbox(marketer):
    make_recipient(external_id="ana")

    assert "Open this user" not in marketer.get("/console/recipients/ana").get_data(as_text=True)
    assert marketer.post("/console/recipients/ana/open-inbox").status_code == 403
    assert audit_entries("recipient.open_inbox") == []
