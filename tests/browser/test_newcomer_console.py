"""In Chromium: a new API key survives no reload, an admin opens a user's inbox from the console, pages have an icon."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from app.extensions import db
from app.models import ApiKey, AuditEntry
from tests.factories import make_notification, make_recipient, make_staff

PASSWORD = "correct horse battery"


@pytest.fixture
def admin_page(app, live_server, page: Page) -> Page:
    with app.app_context():
        make_staff(email="admin@example.com", password=PASSWORD, role="admin")
    page.goto("/console/login")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    return page


def key_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ApiKey))


def test_reloading_the_page_that_shows_a_new_key_creates_nothing_and_shows_nothing(app, admin_page: Page):
    page = admin_page
    page.goto("/console/operations/api-keys")
    page.get_by_label("Name").fill("billing")
    page.get_by_role("button", name="Create key").click()
    plaintext = page.get_by_test_id("api-key-plaintext").inner_text()
    assert plaintext.startswith("hk_") and key_count(app) == 1

    page.reload()

    expect(page.get_by_text("shown only once")).to_be_visible()
    expect(page.get_by_test_id("api-key-plaintext")).to_have_count(0)
    assert plaintext not in page.content()
    assert key_count(app) == 1


def test_admin_opens_a_users_inbox_in_a_new_tab_and_it_is_audited(app, admin_page: Page):
    with app.app_context():
        ana = make_recipient(external_id="ana")
        make_notification(ana, title="Your order shipped", inbox_at=ana.created_at)
    page = admin_page
    page.goto("/console/recipients/ana")

    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Open this user's inbox").click()
    inbox = opened.value

    expect(inbox).to_have_url(re.compile(r"/inbox$"))
    expect(inbox.get_by_test_id("entry-headline")).to_have_text(["Your order shipped"])
    with app.app_context():
        assert (
            db.session.scalar(select(AuditEntry.actor).where(AuditEntry.action == "recipient.open_inbox"))
            == "admin@example.com"
        )


def test_console_pages_have_an_icon(admin_page: Page):
    icon = admin_page.locator('link[rel="icon"]').first.get_attribute("href")
    assert admin_page.request.get(icon).status == 200
    assert admin_page.request.get("/favicon.ico").status == 200
