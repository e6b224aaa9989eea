"""Webhooks in a real browser: an admin adds an endpoint (its secret shown once), then watches a signed event
arrive in Herald's own request log, and replays it."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from app.extensions import db
from app.outbound_webhooks.dispatch import dispatch
from app.outbound_webhooks.endpoints import add_request_log_endpoint
from app.outbound_webhooks.events import Fact
from app.outbound_webhooks.outbox import emit
from tests.factories import make_staff

PASSWORD = "correct horse battery"


@pytest.fixture
def admin_page(app, page: Page) -> Page:
    with app.app_context():
        make_staff(email="admin@example.com", password=PASSWORD, role="admin")
    page.goto("/console/login")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    return page


def test_admin_adds_an_endpoint_and_sees_its_secret_only_once(admin_page: Page):
    page = admin_page
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("URL").fill("http://10.0.0.5/hook")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#url-errors")).to_contain_text("https URL")

    page.get_by_label("URL").fill("https://hooks.example.com/herald")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_test_id("webhook-secret")).to_contain_text("whsec_")
    page.reload()
    expect(page.get_by_test_id("webhook-secret")).to_have_count(0)
    expect(page.get_by_test_id("webhook-state")).to_contain_text("Enabled")


def test_admin_watches_a_signed_event_arrive_in_the_request_log_and_replays_it(app, live_server, admin_page: Page):
    page = admin_page
    with app.app_context():
        endpoint = add_request_log_endpoint(live_server)
        db.session.commit()
        endpoint_id = endpoint.id
        emit([Fact("notification.read", {"user_id": "ana", "notification_id": "n-1"})])
        db.session.commit()
        saved = app.config["WEBHOOK_ALLOWED_HOSTS"]
        app.config["WEBHOOK_ALLOWED_HOSTS"] = frozenset({"127.0.0.1"})
        try:
            assert dispatch(budget_seconds=10)["delivered"] == 1
        finally:
            app.config["WEBHOOK_ALLOWED_HOSTS"] = saved
    page.goto("/console/webhooks/request-log")
    expect(page.get_by_test_id("request-log-entry")).to_have_count(1)
    expect(page.get_by_test_id("request-log-entry")).to_contain_text('"type": "notification.read"')

    page.goto(f"/console/webhooks/{endpoint_id}")
    message = page.locator("[data-testid^=webhook-message-]")
    expect(message).to_contain_text("delivered")
    expect(message).to_contain_text("204")
    message.get_by_role("button", name="Replay").click()
    expect(page.get_by_text("is queued to be sent again")).to_be_visible()
    expect(message).to_contain_text("pending")
