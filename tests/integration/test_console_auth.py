"""Console sign-in, sign-out, the dashboard and its error pages, through the Flask test client."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from rq import Queue

from app import create_app
from app.auth import admin_required
from app.console.routes import safe_next_path
from app.console.stats import utc_day_bounds
from app.delivery.constants import DELIVERY_STATUSES
from app.extensions import db
from app.models import Delivery, StaffUser
from tests.factories import make_notification, make_recipient, make_staff

EMAIL = "admin@example.com"
PASSWORD = "correct horse battery"


def by_testid(html: str, name: str) -> str:
    """The text of the element carrying data-testid=``name``."""
    match = re.search(rf'data-testid="{re.escape(name)}"[^>]*>([^<]*)<', html)
    assert match, f"no element with data-testid={name!r}"
    return match.group(1).strip()


def sign_in(client, email=EMAIL, password=PASSWORD, next_path=None):
    data = {"email": email, "password": password}
    if next_path is not None:
        data["next"] = next_path
    return client.post("/console/login", data=data)


@pytest.fixture
def admin(app):
    with app.app_context():
        staff = make_staff(email=EMAIL, password=PASSWORD)
        return staff.id


def signed_in(client) -> bool:
    with client.session_transaction() as session:
        return "_user_id" in session


def login_form_token(client) -> str:
    html = client.get("/console/login").get_data(as_text=True)
    return re.search(r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


# --- sign-in ---------------------------------------------------------------


def test_login_page_has_labelled_email_and_password_fields(client):
    html = client.get("/console/login").get_data(as_text=True)
    assert '<label for="email">Email</label>' in html
    assert '<label for="password">Password</label>' in html
    assert 'type="password"' in html


def test_right_password_signs_in_and_lands_on_dashboard(app, client, admin):
    response = sign_in(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/"
    assert signed_in(client)
    page = client.get("/console/").get_data(as_text=True)
    assert by_testid(page, "signed-in-email") == EMAIL


def test_sign_in_records_last_login_time(app, client, admin):
    before = datetime.now(UTC)
    sign_in(client)
    with app.app_context():
        last_login = db.session.get(StaffUser, admin).last_login_at
    assert last_login is not None and last_login >= before - timedelta(seconds=1)


def test_email_match_ignores_case(client, admin):
    assert sign_in(client, email="Admin@Example.COM").status_code == 302
    assert signed_in(client)


def test_wrong_password_shows_clear_message_and_creates_no_session(app, client, admin):
    response = sign_in(client, password="not the password")
    assert response.status_code == 200
    assert by_testid(response.get_data(as_text=True), "login-error") == "Wrong email or password."
    assert not signed_in(client)
    assert client.get("/console/").status_code == 302
    with app.app_context():
        assert db.session.get(StaffUser, admin).last_login_at is None


def test_unknown_email_gets_the_same_message_as_a_wrong_password(client, admin):
    response = sign_in(client, email="nobody@example.com")
    assert by_testid(response.get_data(as_text=True), "login-error") == "Wrong email or password."
    assert not signed_in(client)


def test_empty_fields_show_errors_next_to_each_field(client):
    html = client.post("/console/login", data={"email": "", "password": ""}).get_data(as_text=True)
    assert re.search(r'id="email-errors">Enter your email\.<', html)
    assert re.search(r'id="password-errors">Enter your password\.<', html)
    assert 'aria-describedby="email-errors"' in html


def test_inactive_account_is_refused_even_with_the_right_password(app, client):
    with app.app_context():
        staff = make_staff(email="gone@example.com", password=PASSWORD)
        staff.active = False
        db.session.commit()
    response = sign_in(client, email="gone@example.com")
    assert "This account is disabled" in by_testid(response.get_data(as_text=True), "login-error")
    assert not signed_in(client)


def test_signed_in_user_visiting_login_goes_to_dashboard(client, admin):
    sign_in(client)
    response = client.get("/console/login")
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/"


# --- next= -------------------------------------------------------------------


def test_anonymous_dashboard_visit_redirects_to_login_with_next(client):
    response = client.get("/console/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/login?next=")


def test_login_form_carries_next_from_the_query_string(client):
    html = client.get("/console/login?next=/somewhere").get_data(as_text=True)
    assert re.search(r'id="next" name="next" type="hidden" value="/somewhere"', html)


def test_relative_next_is_followed_after_sign_in(client, admin):
    response = sign_in(client, next_path="/healthz?x=1")
    assert response.headers["Location"] == "/healthz?x=1"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
        "",
    ],
)
def test_foreign_or_odd_next_falls_back_to_dashboard(client, admin, target):
    response = sign_in(client, next_path=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/"


def test_safe_next_path_keeps_local_paths_with_query():
    assert safe_next_path("/console/campaigns/3?tab=audience") == "/console/campaigns/3?tab=audience"


# --- where the console lives ---------------------------------------------------


def test_every_console_page_is_under_console_and_public_urls_stay_at_the_root(app):
    """One prefix for staff pages; the public addresses other systems and end users hold do not move."""
    public = (
        "/v1",
        "/inbox",
        "/c/",
        "/unsubscribe/",
        "/webhooks/",
        "/healthz",
        "/metrics",
        "/sw.js",
        "/favicon.ico",
        "/static/",
    )
    rules = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    misplaced = [
        path for path, endpoint in rules.items() if endpoint.startswith("console.") and not path.startswith("/console/")
    ]
    stray = [
        path
        for path, endpoint in rules.items()
        if not path.startswith(("/console/",) + public) and not endpoint.startswith("console_bookmarks.")
    ]
    assert misplaced == [] and stray == []
    assert {path for path, endpoint in rules.items() if endpoint.startswith("console_bookmarks.")} == {"/", "/login"}


def test_the_root_and_the_old_login_bookmark_lead_to_the_console(client, admin):
    root = client.get("/")
    assert root.status_code == 302 and root.headers["Location"] == "/console/"
    old_login = client.get("/login?next=/console/campaigns")
    assert old_login.status_code == 301 and old_login.headers["Location"] == "/console/login?next=/console/campaigns"
    assert client.get("/login").headers["Location"] == "/console/login"
    assert client.get("/campaigns").status_code == 404
    landed = client.get("/", follow_redirects=True)
    assert landed.request.path == "/console/login" and landed.request.args["next"] == "/console/"


# --- sign-out ----------------------------------------------------------------


def test_sign_out_ends_the_session_and_lands_on_login(client, admin):
    sign_in(client)
    response = client.post("/console/logout", follow_redirects=True)
    assert response.request.path == "/console/login"
    assert "You are signed out." in response.get_data(as_text=True)
    assert not signed_in(client)
    assert client.get("/console/").status_code == 302


def test_sign_out_is_not_reachable_with_get(client, admin):
    sign_in(client)
    assert client.get("/console/logout").status_code == 405
    assert signed_in(client)


# --- shell -------------------------------------------------------------------


def test_header_shows_email_role_and_sign_out_button(client, admin):
    sign_in(client)
    html = client.get("/console/").get_data(as_text=True)
    assert by_testid(html, "signed-in-role") == "admin"
    assert re.search(r'<form method="post" action="/console/logout"', html)
    assert 'aria-current="page">Dashboard<' in html


def test_htmx_is_served_from_our_static_folder_and_no_cdn(client, admin):
    sign_in(client)
    html = client.get("/console/").get_data(as_text=True)
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert "/static/js/htmx.min.js" in sources
    assert all(source.startswith("/") and not source.startswith("//") for source in sources)
    script = client.get("/static/js/htmx.min.js")
    assert script.status_code == 200 and b"htmx" in script.data[:200]


def test_marketer_sees_the_dashboard_with_their_role(app, client):
    with app.app_context():
        make_staff(email="m@example.com", password=PASSWORD, role="marketer")
    sign_in(client, email="m@example.com")
    response = client.get("/console/")
    assert response.status_code == 200
    assert by_testid(response.get_data(as_text=True), "signed-in-role") == "marketer"


# --- dashboard ---------------------------------------------------------------


def test_dashboard_counts_what_the_database_holds(app, client, admin):
    with app.app_context():
        recipients = [make_recipient() for _ in range(3)]
        for recipient in recipients:
            make_notification(recipient)
        yesterday = datetime.now(UTC) - timedelta(days=1, hours=1)
        old = make_notification(recipients[0], created_at=yesterday)
        fresh = make_notification(recipients[1])
        db.session.add_all(
            [
                Delivery(notification_id=old.id, channel="email", status="DELIVERED"),
                Delivery(notification_id=old.id, channel="sms", status="FAILED"),
                Delivery(notification_id=fresh.id, channel="email", status="DELIVERED"),
            ]
        )
        db.session.commit()
    sign_in(client)
    html = client.get("/console/").get_data(as_text=True)
    assert by_testid(html, "count-recipients") == "3"
    assert by_testid(html, "count-notifications-today") == "4"
    expected = {
        "pending": "0",
        "sending": "0",
        "dispatched": "0",
        "delivered": "2",
        "failed": "1",
        "suppressed": "0",
        "uncertain": "0",
    }
    assert {
        status.lower(): by_testid(html, f"count-deliveries-{status.lower()}") for status in DELIVERY_STATUSES
    } == expected


def test_dashboard_shows_queue_depths_from_redis(app, client, admin, redis_conn):
    Queue("high", connection=redis_conn).enqueue("builtins.print", "x")
    Queue("high", connection=redis_conn).enqueue("builtins.print", "y")
    sign_in(client)
    html = client.get("/console/").get_data(as_text=True)
    assert by_testid(html, "queue-high-queued") == "2"
    for name in ("critical", "normal", "low"):
        assert by_testid(html, f"queue-{name}-queued") == "0"
        assert by_testid(html, f"queue-{name}-workers") == "0"


def test_dashboard_still_renders_when_redis_is_down(app, client, admin):
    from app.redis_client import connect

    sign_in(client)
    saved = app.extensions["herald_redis"]
    app.extensions["herald_redis"] = connect("redis://127.0.0.1:1/0")
    try:
        response = client.get("/console/")
    finally:
        app.extensions["herald_redis"] = saved
    assert response.status_code == 200
    assert "Redis is not answering" in by_testid(response.get_data(as_text=True), "queues-unavailable")


def test_htmx_request_gets_only_the_counts_partial(app, client, admin):
    with app.app_context():
        make_recipient()
    sign_in(client)
    response = client.get("/console/", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="dashboard-counts"')
    assert "<html" not in html and "site-header" not in html
    assert by_testid(html, "count-recipients") == "1"


def test_full_page_includes_the_polling_partial(client, admin):
    sign_in(client)
    html = client.get("/console/").get_data(as_text=True)
    assert re.search(
        r'<div id="dashboard-counts"[^>]*\s+hx-get="/console/" hx-trigger="every 5s" hx-swap="outerHTML"', html
    )


def test_htmx_poll_after_session_ends_reloads_into_sign_in(client):
    response = client.get("/console/", headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/console/login?next=/console/"


def test_utc_day_bounds_follow_the_utc_calendar_not_local_time():
    lisbon_evening = datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-3)))
    start, end = utc_day_bounds(lisbon_evening)
    assert start == datetime(2026, 3, 2, tzinfo=UTC)
    assert end == datetime(2026, 3, 3, tzinfo=UTC)


# --- error pages and CSRF ----------------------------------------------------


@pytest.fixture
def csrf_app(app):
    """A second app with CSRF on (the shared one turns it off), on the same database and Redis."""
    application = create_app({"TESTING": True})
    assert application.config["WTF_CSRF_ENABLED"] is not False
    return application


def test_login_without_csrf_token_is_a_400_page_not_a_500(csrf_app, admin):
    client = csrf_app.test_client()
    response = client.post("/console/login", data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert by_testid(html, "error-code") == "400"
    assert "Reload the page and try again" in by_testid(html, "error-description")
    assert not signed_in(client)


def test_login_with_the_form_csrf_token_signs_in(csrf_app, admin):
    client = csrf_app.test_client()
    response = client.post(
        "/console/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": login_form_token(client)}
    )
    assert response.status_code == 302
    assert signed_in(client)


def test_sign_out_without_csrf_token_is_refused(csrf_app, admin):
    client = csrf_app.test_client()
    client.post("/console/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": login_form_token(client)})
    assert client.post("/console/logout").status_code == 400
    assert signed_in(client)
    page = client.get("/console/").get_data(as_text=True)
    header_token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/console/logout", data={"csrf_token": header_token}).status_code == 302
    assert not signed_in(client)


def test_not_found_page_uses_the_console_layout_for_anonymous_visitors(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert 'href="/static/css/herald.css"' in html
    assert by_testid(html, "error-code") == "404"
    assert "signed-in-email" not in html


def test_forbidden_and_server_error_pages_render_styled(csrf_app, app):
    @csrf_app.get("/test-admin-only")
    @admin_required
    def admin_only():
        return "secret"

    @csrf_app.get("/test-boom")
    def boom():
        raise RuntimeError("boom")

    with app.app_context():
        make_staff(email="m@example.com", password=PASSWORD, role="marketer")
    client = csrf_app.test_client()
    client.post(
        "/console/login", data={"email": "m@example.com", "password": PASSWORD, "csrf_token": login_form_token(client)}
    )

    forbidden = client.get("/test-admin-only")
    assert forbidden.status_code == 403
    html = forbidden.get_data(as_text=True)
    assert by_testid(html, "error-description") == "This page is for admins."
    assert by_testid(html, "signed-in-role") == "marketer"

    crashed = client.get("/test-boom")
    assert crashed.status_code == 500
    html = crashed.get_data(as_text=True)
    assert by_testid(html, "error-code") == "500"
    assert "signed-in-email" not in html


def test_password_guessing_is_rate_limited_per_address(client):
    codes = [
        client.post("/console/login", data={"email": "admin@example.com", "password": f"guess-{n}"}).status_code
        for n in range(11)
    ]
    assert codes[:10] == [200] * 10
    assert codes[10] == 429
    assert (
        b"Too many sign-in attempts"
        in client.post("/console/login", data={"email": "x@example.com", "password": "y"}).data
    )
