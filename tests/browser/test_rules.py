"""A marketer creates a low-balance rule in the console, sees field errors, edits it and runs a dry run."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, Rule
from tests.browser.test_console_signin import sign_in
from tests.factories import make_recipient, make_staff, make_template

EMAIL, PASSWORD = "marketer@example.com", "correct horse battery"


def test_marketer_creates_edits_and_dry_runs_a_rule(app, live_server, page: Page):
    with app.app_context():
        make_staff(email=EMAIL, password=PASSWORD, role="marketer")
        make_template(key="low_balance", name="Low balance", category="low_balance")
        for zone in ("Europe/Lisbon", "Europe/Lisbon", "Asia/Tokyo"):
            make_recipient(timezone=zone, attributes={"balance": 10, "low_balance_threshold": 50})
        make_recipient(timezone="Europe/Lisbon", attributes={"balance": 900, "low_balance_threshold": 50})

    page.goto("/console/rules")
    sign_in(page, EMAIL, PASSWORD)
    expect(page).to_have_url(f"{live_server}/console/rules")
    page.get_by_role("link", name="New rule").click()

    page.get_by_label("Name").fill("Low balance")
    page.get_by_label("Audience filter (JSON)").fill('{"all": [{"field": "password", "op": "=", "value": 1}]}')
    page.get_by_label("Send from (local)").fill("18:00")
    page.get_by_label("Send until (local)").fill("08:00")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_text("filter.all.0.field: unknown field")).to_be_visible()
    expect(page.get_by_text("The window must end after it starts")).to_be_visible()

    page.get_by_label("Audience filter (JSON)").fill(
        '{"all": [{"field": "attributes.balance", "op": "<", "field_value": "attributes.low_balance_threshold"}]}'
    )
    # A window of the whole day, so the dry run counts everyone whatever the hour the test runs at.
    page.get_by_label("Send from (local)").fill("00:00")
    page.get_by_label("Send until (local)").fill("23:59")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_text("Rule “Low balance” created.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/console/rules/\d+$"))

    page.evaluate("window.sameDocument = true")
    page.get_by_role("button", name="Run dry run").click()
    expect(page.get_by_test_id("dry-run-total")).to_have_text("3")
    expect(page.get_by_test_id("dry-run-zone-Europe/Lisbon")).to_have_text("2")
    expect(page.get_by_test_id("dry-run-zone-Asia/Tokyo")).to_have_text("1")
    assert page.evaluate("window.sameDocument") is True

    page.get_by_label("At most once every N local days").fill("2")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_text("Rule “Low balance” saved.")).to_be_visible()
    page.get_by_role("link", name="Rules").first.click()
    expect(page.get_by_test_id("rules-table")).to_contain_text("every 2 days")

    with app.app_context():
        rule = db.session.scalar(select(Rule))
        assert (rule.every_days, rule.channels) == (2, ["in_app", "push"])
        actions = db.session.scalars(
            select(AuditEntry.action).where(AuditEntry.target_type == "rule").order_by(AuditEntry.id)
        ).all()
        assert actions == ["rule.create", "rule.update"]
        assert db.session.scalar(select(AuditEntry.actor).where(AuditEntry.action == "rule.update")) == EMAIL


def test_enabling_a_rule_whose_template_fails_for_its_audience_is_refused_with_the_recipient(
    app, live_server, page: Page
):
    with app.app_context():
        make_staff(email=EMAIL, password=PASSWORD, role="marketer")
        make_template(
            key="low_balance",
            name="Low balance",
            category="low_balance",
            variants={
                "en": {"in_app": {"title": "Low", "body": "Below {{ recipient.attributes.low_balance_threshold }}"}}
            },
        )
        make_recipient(external_id="no-threshold", attributes={"balance": 10})

    page.goto("/console/rules/new")
    sign_in(page, EMAIL, PASSWORD)
    page.get_by_label("Name").fill("Low balance")
    page.get_by_label("Audience filter (JSON)").fill('{"all": []}')
    page.get_by_role("button", name="Save rule").click()
    error = page.locator("#enabled-errors")
    expect(error).to_contain_text("does not render for recipient no-threshold")
    expect(error).to_contain_text("low_balance_threshold")
    expect(page.get_by_label("Name")).to_have_value("Low balance")

    page.get_by_label("Enabled").uncheck()
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_text("Rule “Low balance” created.")).to_be_visible()
    with app.app_context():
        assert db.session.scalar(select(Rule.enabled)) is False
