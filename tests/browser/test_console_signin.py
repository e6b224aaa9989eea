"""Signing in to the console, reading the dashboard and signing out, in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.factories import make_notification, make_recipient, make_staff

EMAIL = "admin@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
def admin(app):
    with app.app_context():
        make_staff(email=EMAIL, password=PASSWORD, role="admin")


def seed_recipients(app, count: int, notifications_each: int = 0) -> None:
    with app.app_context():
        for _ in range(count):
            recipient = make_recipient()
            for _ in range(notifications_each):
                make_notification(recipient)


def sign_in(page: Page, email: str = EMAIL, password: str = PASSWORD) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_admin_signs_in_sees_seeded_counts_and_signs_out(app, live_server, admin, page: Page):
    seed_recipients(app, 4, notifications_each=2)

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/console/login\?next=%2Fconsole%2F$"))
    sign_in(page)

    expect(page).to_have_url(f"{live_server}/console/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_test_id("signed-in-email")).to_have_text(EMAIL)
    expect(page.get_by_test_id("signed-in-role")).to_have_text("admin")
    expect(page.get_by_test_id("count-recipients")).to_have_text("4")
    expect(page.get_by_test_id("count-notifications-today")).to_have_text("8")
    expect(page.get_by_test_id("count-deliveries-pending")).to_have_text("0")
    expect(page.get_by_test_id("queue-critical-queued")).to_have_text("0")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_server}/console/login")
    expect(page.get_by_text("You are signed out.")).to_be_visible()

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/console/login\?next=%2Fconsole%2F$"))


def test_wrong_password_shows_the_message_and_opens_no_session(app, live_server, admin, page: Page):
    page.goto("/console/login")
    sign_in(page, password="not the password")

    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    expect(page.get_by_label("Email")).to_have_value(EMAIL)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/console/login\?next=%2Fconsole%2F$"))


def test_dashboard_counts_refresh_in_place_without_a_reload(app, live_server, admin, page: Page):
    seed_recipients(app, 1)
    page.goto("/console/login")
    sign_in(page)
    expect(page.get_by_test_id("count-recipients")).to_have_text("1")
    page.evaluate("window.sameDocument = true")

    seed_recipients(app, 2)

    expect(page.get_by_test_id("count-recipients")).to_have_text("3", timeout=8000)
    assert page.evaluate("window.sameDocument") is True
