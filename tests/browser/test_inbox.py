"""The end-user inbox in a real browser against gunicorn + gevent: live delivery, isolation, tabs, preferences, push opt-in.

Two users are two browser contexts (separate cookie jars). Notifications go
through the real /v1 API and Herald's worker (``run_jobs``), whose in-app
channel publishes to Redis; the live server's hub streams them to the pages.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from app.extensions import db
from app.inbox.auth import user_token
from app.models import Delivery
from tests.factories import make_recipient, make_template

LIVE = 3000  # ms: "within a second" plus slack for a loaded CI machine


@pytest.fixture
def users(app):
    with app.app_context():
        make_recipient(external_id="ana")
        make_recipient(external_id="bob")
        make_template("promo", category="promotions", type="marketing")


@pytest.fixture
def new_context(browser: Browser, live_server):
    """Browser contexts (one per user or per permission setup) on the live server, closed at the end."""
    contexts = []

    def make(**options) -> BrowserContext:
        contexts.append(browser.new_context(base_url=live_server, **options))
        return contexts[-1]

    yield make
    for context in contexts:
        context.close()


def open_inbox(context: BrowserContext, app, user_id: str) -> Page:
    page = context.new_page()
    page.goto(f"/inbox?user={user_id}&token={user_token(app.config['INBOX_SECRET'], user_id)}")
    expect(page).to_have_url(re.compile(r"/inbox$"))
    expect(page.locator("[data-inbox-stream]")).to_have_attribute("data-stream", "open")
    return page


def send(api, user_id: str, title: str, **fields) -> str:
    body = {
        "user_id": user_id,
        "type": "transactional",
        "title": title,
        "body": "Body",
        "channels": ["in_app"],
        **fields,
    }
    response = api.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.json
    return response.json["id"]


def headlines(page: Page):
    return page.get_by_test_id("entry-headline")


def test_a_notification_appears_live_for_its_owner_and_never_for_anyone_else(
    app, live_server, users, api, run_jobs, new_context
):
    ana_context, bob_context = new_context(), new_context()
    ana, bob = open_inbox(ana_context, app, "ana"), open_inbox(bob_context, app, "bob")
    expect(ana.get_by_test_id("unread-count")).to_have_text("0")

    send(api, "ana", "Your order shipped")
    run_jobs()

    expect(headlines(ana)).to_have_text(["Your order shipped"], timeout=LIVE)
    expect(ana.get_by_test_id("unread-count")).to_have_text("1")
    expect(bob.get_by_test_id("inbox-empty")).to_be_visible()
    expect(bob.get_by_test_id("unread-count")).to_have_text("0")

    # Bob reconnects (new EventSource with his last id, then a full reload): still nothing of Ana's.
    bob.evaluate("window.heraldInbox.reconnect()")
    expect(bob.locator("[data-inbox-stream]")).to_have_attribute("data-stream", "open")
    send(api, "ana", "Second for Ana")
    run_jobs()
    expect(headlines(ana)).to_have_text(["Second for Ana", "Your order shipped"], timeout=LIVE)
    bob.reload()
    expect(bob.get_by_test_id("inbox-empty")).to_be_visible()
    expect(bob.get_by_text("Ana")).to_have_count(0)
    assert "Your order shipped" not in bob.content() and "Second for Ana" not in bob.content()


def test_missed_while_disconnected_shows_after_reconnect(app, live_server, users, api, run_jobs, new_context):
    context = new_context()
    page = open_inbox(context, app, "ana")
    context.set_offline(True)
    send(api, "ana", "Arrived while offline")
    run_jobs()
    context.set_offline(False)
    page.evaluate("window.heraldInbox.reconnect()")
    expect(headlines(page)).to_have_text(["Arrived while offline"], timeout=LIVE)


def test_reading_in_one_tab_updates_the_badge_and_list_in_the_other(
    app, live_server, users, api, run_jobs, new_context
):
    context = new_context()
    send(api, "ana", "First")
    send(api, "ana", "Second")
    run_jobs()
    first_tab, second_tab = open_inbox(context, app, "ana"), open_inbox(context, app, "ana")
    expect(second_tab.get_by_test_id("unread-count")).to_have_text("2")

    first_tab.get_by_test_id("inbox-entry").first.get_by_role("button", name="Mark as read").click()
    expect(first_tab.get_by_test_id("unread-count")).to_have_text("1")
    expect(second_tab.get_by_test_id("unread-count")).to_have_text("1", timeout=LIVE)

    first_tab.get_by_role("button", name="Mark all as read").click()
    expect(second_tab.get_by_test_id("unread-count")).to_have_text("0", timeout=LIVE)
    expect(second_tab.locator(".inbox-entry--unread")).to_have_count(0)


def test_a_preference_switched_off_on_the_page_suppresses_the_next_notification(
    app, live_server, users, api, run_jobs, page: Page
):
    page.goto(f"/inbox?user=ana&token={user_token(app.config['INBOX_SECRET'], 'ana')}")
    page.get_by_role("link", name="Preferences").click()
    switch = page.get_by_label("In-app: promotions")
    expect(switch).to_be_checked()
    switch.uncheck()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_text("Your preferences are saved")).to_be_visible()
    expect(page.get_by_label("In-app: promotions")).not_to_be_checked()

    suppressed = send(api, "ana", "Big sale", type="marketing", category="promotions")
    delivered = send(api, "ana", "Receipt", category="orders")
    run_jobs()
    with app.app_context():
        by_id = {d.notification_id: (d.status, d.reason) for d in db.session.scalars(select(Delivery))}
    assert by_id[suppressed] == ("SUPPRESSED", "opted_out") and by_id[delivered][0] == "DELIVERED"
    page.get_by_role("link", name=re.compile("^Inbox")).click()
    expect(headlines(page)).to_have_text(["Receipt"])


def test_a_digest_frequency_chosen_on_the_page_is_what_the_api_reads(app, live_server, users, api, page: Page):
    page.goto(f"/inbox?user=ana&token={user_token(app.config['INBOX_SECRET'], 'ana')}")
    page.get_by_role("link", name="Preferences").click()
    choice = page.get_by_test_id("digests").get_by_label("Promotions")
    expect(choice).to_have_value("default")
    choice.select_option(label="Daily, at 09:00 your time")
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_text("Your preferences are saved")).to_be_visible()
    expect(page.get_by_test_id("digests").get_by_label("Promotions")).to_have_value("daily")
    assert api.get("/v1/users/ana/preferences").json["digests"] == [{"category": "promotions", "frequency": "daily"}]


@pytest.mark.parametrize("grant", [False, True], ids=["never-asked", "granted-nothing"])
def test_push_opt_in_explains_a_denied_permission(app, live_server, users, new_context, grant):
    context = new_context()
    if grant:
        context.grant_permissions([])
    page = open_inbox(context, app, "ana")
    page.get_by_role("button", name="Turn on browser notifications").click()
    expect(page.get_by_test_id("push-message")).to_have_text(
        re.compile(r"Notifications are blocked for this site|You did not allow notifications")
    )
    expect(page.get_by_role("button", name="Turn on browser notifications")).to_be_enabled()


def test_staff_view_as_is_read_only_in_the_browser(app, live_server, users, api, run_jobs, page: Page):
    from tests.factories import make_staff

    with app.app_context():
        make_staff(email="admin@example.com", password="correct horse battery", role="admin")
    send(api, "ana", "Private to Ana")
    run_jobs()
    page.goto("/console/login")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in").click()
    page.goto("/console/recipients/ana/inbox-view")
    expect(page.get_by_test_id("view-as-banner")).to_be_visible()
    expect(headlines(page)).to_have_text(["Private to Ana"])
    expect(page.get_by_role("button", name="Mark as read")).to_be_disabled()
    expect(page.get_by_role("button", name="Mark all as read")).to_be_disabled()
