"""Recipients in a real browser: an admin changes an opt-out and finds it in the audit log; a marketer only reads."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from app.extensions import db
from app.models import Preference
from tests.factories import make_recipient, make_staff

PASSWORD = "correct horse battery"


@pytest.fixture
def people(app):
    with app.app_context():
        make_staff(email="admin@example.com", password=PASSWORD, role="admin")
        make_staff(email="marketer@example.com", password=PASSWORD, role="marketer")
        make_recipient(external_id="ana-1", email="ana@example.com")
        make_recipient(external_id="bruno-2", email="bruno@example.com")


def sign_in(page: Page, email: str) -> None:
    page.goto("/console/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("signed-in-email")).to_have_text(email)


def test_admin_finds_a_user_by_email_turns_off_marketing_email_and_sees_it_audited(
    app, live_server, people, page: Page
):
    sign_in(page, "admin@example.com")
    page.get_by_role("link", name="Recipients").click()
    page.get_by_label("Find by user id, email or phone").press_sequentially("ana@", delay=30)
    expect(page).to_have_url(re.compile(r"/console/recipients\?q=ana%40$"))  # active search pushed the URL
    results = page.locator("#recipient-results")
    expect(results.get_by_role("link", name="bruno-2")).to_have_count(0)
    results.get_by_role("link", name="ana-1").click()

    cell = page.get_by_test_id("pref-email-marketing")
    expect(cell).to_have_attribute("data-enabled", "on")
    page.evaluate("window.sameDocument = true")
    cell.get_by_role("button", name="email marketing: on").click()
    expect(page.get_by_test_id("pref-email-marketing")).to_have_attribute("data-enabled", "off")
    assert page.evaluate("window.sameDocument") is True  # htmx swapped the grid in place
    with app.app_context():
        row = db.session.scalar(db.select(Preference).where(Preference.category == "marketing"))
        assert (row.channel, row.enabled) == ("email", False)

    page.get_by_role("link", name="Audit history").click()
    row = page.locator("#audit-rows tbody tr").first
    expect(row).to_contain_text("admin@example.com")
    expect(row).to_contain_text("preference.set")
    expect(row).to_contain_text('"enabled": false')


def test_marketer_sees_the_recipient_page_read_only(app, live_server, people, page: Page):
    sign_in(page, "marketer@example.com")
    page.goto("/console/recipients/ana-1")
    expect(page.get_by_role("heading", name="Recipient ana-1")).to_be_visible()
    expect(page.get_by_test_id("read-only")).to_be_visible()
    expect(page.get_by_test_id("pref-email-marketing")).to_have_attribute("data-enabled", "on")
    expect(page.locator("main form")).to_have_count(0)
    expect(page.get_by_role("link", name="Erase recipient…")).to_have_count(0)
    response = page.request.post(f"{live_server}/console/recipients/ana-1/hard-stop", form={"enabled": "1"})
    assert response.status in (400, 403)  # refused: no CSRF token, and no admin role either
