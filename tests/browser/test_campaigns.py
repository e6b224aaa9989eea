"""Campaigns in a real browser: compose, test-send, launch, watch live progress, pause, resume, cancel."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, insert, select

from app.delivery.tracking import click_token
from app.extensions import db
from app.models import Notification, Recipient
from app.models.types import utcnow
from tests.factories import make_staff, make_template

EMAIL = "mia@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
def marketer(app):
    with app.app_context():
        make_staff(email=EMAIL, password=PASSWORD, role="marketer")


def seed(app, count: int) -> None:
    with app.app_context():
        now = utcnow()
        db.session.execute(
            insert(Recipient),
            [
                {
                    "external_id": f"b{n}",
                    "email": None,
                    "timezone": "Europe/Lisbon",
                    "locale": "en",
                    "attributes": {"plan": "pro" if n % 2 else "free"},
                    "hard_stop": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(count)
            ],
        )
        db.session.commit()


def sign_in(page: Page) -> None:
    page.goto("/console/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def compose(page: Page, name: str, audience: str, channels: list[str]) -> None:
    page.get_by_role("link", name="Campaigns", exact=True).click()
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Template").select_option(label="Spring (spring)")
    page.get_by_label("Audience filter (JSON)").fill(audience)
    for channel in channels:
        page.get_by_label(channel, exact=True).check()
    page.get_by_label("Send now").check()
    page.get_by_role("button", name="Save draft").click()


def test_marketer_composes_test_sends_launches_and_watches_progress_live(
    app, live_server, marketer, run_jobs, page: Page
):
    seed(app, 6)
    with app.app_context():
        make_template(
            "spring",
            type="marketing",
            category="promo",
            variants={"en": {"in_app": {"title": "Spring is here", "body": "New colours"}}},
        )
    sign_in(page)

    compose(page, "Spring launch", '{"all": [{"field": "attributes.plan", "op": "=", "value": "pro"}]}', ["In-app"])
    expect(page.get_by_role("heading", name=re.compile("Spring launch"))).to_be_visible()
    expect(page.get_by_test_id("campaign-status")).to_have_text("draft")
    expect(page.get_by_test_id("audience-count")).to_have_text("3")

    page.get_by_label("User ids (comma-separated)").fill("b1, nobody")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_test_id("test-results")).to_contain_text("nobody: no recipient has this user id")
    expect(page.get_by_test_id("test-outcome-b1")).to_contain_text("queued")  # accepted, not yet sent
    run_jobs()
    expect(page.get_by_test_id("test-outcome-b1-in_app")).to_have_text("In-app sent", timeout=8000)

    page.get_by_role("button", name="Launch").click()
    expect(page.get_by_text("Campaign launched.")).to_be_visible()
    expect(page.get_by_test_id("campaign-status")).to_have_text("running")
    expect(page.get_by_test_id("count-sent")).to_have_text("0")
    page.evaluate("window.sameDocument = true")

    run_jobs()  # the workers' part: plan, then the batch

    expect(page.get_by_test_id("count-planned")).to_have_text("3", timeout=8000)
    expect(page.get_by_test_id("count-sent")).to_have_text("3", timeout=8000)
    expect(page.get_by_test_id("live-status")).to_have_text("finished", timeout=8000)
    expect(page.get_by_test_id("sent-by-channel")).to_contain_text("in_app: 3")
    assert page.evaluate("window.sameDocument") is True, "the numbers changed without a reload"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 4  # 3 + the test send
        one = db.session.scalar(select(Notification.id).where(Notification.campaign_id.is_not(None)).limit(1))
        tracked = f"{live_server}/c/{click_token(app.config['SECRET_KEY'], one, 'push', f'{live_server}/healthz')}"

    # A recipient taps the notification's tracked link: it lands where the link pointed, and the campaign counts it.
    expect(page.get_by_test_id("count-clicked")).to_have_text("0")
    reader = page.context.new_page()
    reader.goto(tracked)
    expect(reader).to_have_url(f"{live_server}/healthz")
    page.reload()
    expect(page.get_by_test_id("count-clicked")).to_have_text("1")


def test_campaign_that_cannot_launch_says_why(app, live_server, marketer, page: Page):
    with app.app_context():
        make_template(
            "spring",
            type="marketing",
            category="promo",
            variants={"en": {"in_app": {"title": "Spring", "body": "New colours"}}},
        )
    sign_in(page)

    compose(page, "Nobody", '{"all": [{"field": "attributes.plan", "op": "=", "value": "gold"}]}', ["In-app"])
    problems = page.get_by_test_id("launch-problems")
    expect(problems).to_contain_text("The audience is empty: no recipient matches its filter.")
    expect(page.get_by_role("button", name="Launch")).to_be_disabled()


def test_bad_filter_and_channel_errors_show_next_to_their_fields(app, live_server, marketer, page: Page):
    with app.app_context():
        make_template(
            "spring",
            type="marketing",
            category="promo",
            variants={"en": {"in_app": {"title": "Spring", "body": "New colours"}}},
        )
    sign_in(page)

    compose(page, "Broken", '{"all": [{"field": "attributes.plan", "op": "~"}]}', ["In-app", "SMS"])
    expect(page.get_by_role("alert")).to_contain_text("The campaign was not saved")
    expect(page.locator("#audience_filter-errors")).to_contain_text("filter.all.0.op: unknown operator '~'")
    expect(page.locator("#channels-errors")).to_contain_text("The template has no variant for sms")
    expect(page.get_by_label("Name")).to_have_value("Broken")


def test_pause_resume_and_cancel_from_the_campaign_page(app, live_server, marketer, run_jobs, page: Page):
    seed(app, 4)
    with app.app_context():
        make_template(
            "spring",
            type="marketing",
            category="promo",
            variants={"en": {"in_app": {"title": "Spring", "body": "New colours"}}},
        )
    sign_in(page)
    compose(page, "Stop and go", '{"all": []}', ["In-app"])
    page.get_by_role("button", name="Launch").click()

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_text("Campaign paused")).to_be_visible()
    expect(page.get_by_test_id("campaign-status")).to_have_text("paused")
    run_jobs()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 0

    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("running")
    run_jobs()
    expect(page.get_by_test_id("live-status")).to_have_text("finished", timeout=8000)
    expect(page.get_by_test_id("count-sent")).to_have_text("4")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 4

    compose(page, "Never mind", '{"all": []}', ["In-app"])
    page.get_by_role("button", name="Launch").click()
    page.get_by_role("button", name="Cancel campaign").click()
    expect(page.get_by_text("Campaign cancelled")).to_be_visible()
    expect(page.get_by_test_id("campaign-status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Resume")).to_have_count(0)
    run_jobs()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 4


def test_campaign_page_shows_failures_by_error_code_and_its_badge_and_buttons_change_live_when_it_finishes(
    app, live_server, marketer, run_jobs, page: Page
):
    with app.app_context():
        now = utcnow()
        # The launch check renders for a sample of the audience (the first 50 and the first of each locale);
        # the five without a plan come after it, so the campaign launches and their messages fail.
        db.session.execute(
            insert(Recipient),
            [
                {
                    "external_id": f"p{n:02d}",
                    "email": None,
                    "timezone": "Europe/Lisbon",
                    "locale": "en",
                    "attributes": {"plan": "pro"} if n < 55 else {},
                    "hard_stop": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(60)
            ],
        )
        db.session.commit()
        make_template(
            "spring",
            type="marketing",
            category="promo",
            variants={"en": {"in_app": {"title": "Spring", "body": "Your {{ recipient.attributes.plan }} plan"}}},
        )
    sign_in(page)
    compose(page, "Plans", '{"all": []}', ["In-app"])
    page.get_by_role("button", name="Launch").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("running")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    expect(page.get_by_test_id("no-failures")).to_be_visible()
    page.evaluate("window.sameDocument = true")

    run_jobs()

    expect(page.get_by_test_id("campaign-status")).to_have_text("finished", timeout=8000)
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel campaign")).to_have_count(0)
    failures = page.get_by_test_id("failure-render_error")
    expect(failures).to_contain_text("5", timeout=8000)
    expect(failures).to_contain_text("plan")
    expect(page.get_by_test_id("count-failed")).to_have_text("5")
    assert page.evaluate("window.sameDocument") is True, "the badge and buttons changed without a reload"

    page.reload()
    expect(page.get_by_test_id("campaign-status")).to_have_text("finished")
    expect(page.get_by_test_id("campaign-finished")).to_be_visible()
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    expect(page.get_by_test_id("failure-render_error")).to_contain_text("5")


def test_launch_is_refused_when_the_template_fails_for_someone_in_the_audience(app, live_server, marketer, page: Page):
    seed(app, 2)
    with app.app_context():
        make_template(
            "spring",
            type="marketing",
            category="promo",
            variants={"en": {"in_app": {"title": "Spring", "body": "Hi {{ recipient.external_id }}"}}},
        )
    sign_in(page)
    compose(page, "Typo", '{"all": []}', ["In-app"])
    page.get_by_role("button", name="Launch").click()
    refusal = page.locator(".flash--error")
    expect(refusal).to_contain_text("does not render for recipient b0")
    expect(refusal).to_contain_text("external_id")
    expect(page.get_by_test_id("campaign-status")).to_have_text("draft")
