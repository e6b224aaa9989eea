"""A marketer builds a template with a live preview, versions and diffs it, and builds an audience with a live count."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.factories import make_recipient, make_staff

EMAIL = "mia@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
def marketer(app):
    with app.app_context():
        make_staff(email=EMAIL, password=PASSWORD, role="marketer")


def sign_in(page: Page, path: str) -> None:
    page.goto(path)
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_marketer_builds_a_template_with_live_preview_saves_two_versions_and_sees_the_diff(
    app, live_server, marketer, page: Page
):
    with app.app_context():
        make_recipient(external_id="ana", attributes={"balance": 12})
    sign_in(page, "/console/templates/new")
    expect(page.get_by_role("heading", name="New template")).to_be_visible()
    page.get_by_label("Key").fill("low-balance")
    page.get_by_label("Name").fill("Low balance")
    page.get_by_label("Preview for user id").fill("ana")
    page.get_by_label("In-app title (en)").fill("Balance low")
    body = page.get_by_label("In-app body (en)")
    body.fill("Hi {{ recipient.id }}, you have {{ recipient.attributes.balance }}")
    expect(page.get_by_test_id("preview-in_app-body")).to_have_text("Hi ana, you have 12")

    # Typing an undefined variable shows the error next to the field, with its line, without a reload.
    page.evaluate("window.sameDocument = true")
    body.fill("Hi {{ recipient.id }},\n{{ recipient.attributes.nickname }}")
    expect(page.get_by_test_id("error-v-en-in_app-body")).to_have_text(re.compile(r"^Line 2: .*nickname"))
    body.fill("Hi {{ recipient.id }}, you have {{ recipient.attributes.balance }}")
    expect(page.get_by_test_id("error-v-en-in_app-body")).to_have_text("")
    assert page.evaluate("window.sameDocument") is True

    page.get_by_test_id("locale-en").locator("summary", has_text="SMS").click()
    page.get_by_label("SMS text (en)").fill("Balance {{ recipient.attributes.balance }}")
    expect(page.get_by_test_id("sms-segments")).to_contain_text("1 segment · GSM-7")
    page.get_by_role("button", name="Save new version").click()
    expect(page.get_by_text("Saved low-balance, version 1.")).to_be_visible()

    page.get_by_label("SMS text (en)").fill("Only {{ recipient.attributes.balance }} left")
    page.get_by_role("button", name="Save new version").click()
    expect(page.get_by_text("Saved low-balance, version 2.")).to_be_visible()
    expect(page.get_by_test_id("current-version")).to_have_text("Version 2")

    page.get_by_role("link", name="Diff").click()
    expect(page.get_by_test_id("diff-field")).to_have_text(["en · SMS · text"])
    expect(page.locator(".diff-line--replace .diff-old")).to_have_text("Balance {{ recipient.attributes.balance }}")
    expect(page.locator(".diff-line--replace .diff-new")).to_have_text("Only {{ recipient.attributes.balance }} left")


def test_marketer_builds_a_low_balance_audience_and_watches_the_count_change(app, live_server, marketer, page: Page):
    with app.app_context():
        make_recipient(
            external_id="sg-low", timezone="Asia/Singapore", attributes={"balance": 5, "low_balance_threshold": 50}
        )
        make_recipient(
            external_id="lis-low", timezone="Europe/Lisbon", attributes={"balance": 10, "low_balance_threshold": 50}
        )
        make_recipient(
            external_id="ny-low", timezone="America/New_York", attributes={"balance": 1, "low_balance_threshold": 50}
        )
        make_recipient(
            external_id="sg-rich", timezone="Asia/Singapore", attributes={"balance": 500, "low_balance_threshold": 50}
        )
    sign_in(page, "/console/audiences/new")
    expect(page.get_by_test_id("audience-count")).to_have_text("4")

    page.get_by_role("button", name="Add condition", exact=True).click()
    page.get_by_label("Field of condition 1").fill("attributes.balance")
    page.get_by_label("Operator of condition 1").select_option("<")
    page.get_by_label("Compare condition 1 with").select_option("attribute")
    page.get_by_label("Value of condition 1").fill("low_balance_threshold")
    expect(page.get_by_test_id("audience-count")).to_have_text("3")

    page.get_by_role("button", name="Add condition", exact=True).click()
    page.evaluate("window.sameDocument = true")
    page.get_by_label("Field of condition 2").fill("timezone")
    page.get_by_label("Operator of condition 2").select_option("in")
    page.get_by_label("Value of condition 2").fill("Asia/Singapore, Europe/Lisbon")
    expect(page.get_by_test_id("audience-count")).to_have_text("2")
    expect(page.get_by_test_id("audience-sample").locator("tbody th")).to_have_text(["sg-low", "lis-low"])

    page.get_by_label("Value of condition 2").fill("Asia/Singapore")
    expect(page.get_by_test_id("audience-count")).to_have_text("1")
    page.get_by_label("Operator of condition 2").select_option("<")
    page.get_by_label("Field of condition 2").fill("attributes.balance")
    page.get_by_label("Value of condition 2").fill("cheap")
    expect(page.get_by_test_id("row-error-2")).to_contain_text("needs a number")
    assert page.evaluate("window.sameDocument") is True

    page.get_by_label("Field of condition 2").fill("timezone")
    page.get_by_label("Operator of condition 2").select_option("in")
    page.get_by_label("Value of condition 2").fill("Asia/Singapore, Europe/Lisbon")
    page.get_by_label("Audience name").fill("Low balance SG + Lisbon")
    page.get_by_role("button", name="Save audience").click()
    expect(page.get_by_text("Saved audience Low balance SG + Lisbon.")).to_be_visible()
    expect(page.get_by_test_id("audience-count")).to_have_text("2")


def test_marketer_uploads_a_csv_and_watches_the_import_finish(
    app, live_server, marketer, page: Page, run_jobs, tmp_path
):
    csv = tmp_path / "people.csv"
    csv.write_text("user_id,email,balance\nu1,u1@example.com,5\nu2,broken,7\nu3,,9\n")
    sign_in(page, "/console/audiences/import")
    page.get_by_label("CSV file").set_input_files(str(csv))
    page.get_by_role("button", name="Upload and import").click()
    expect(page.get_by_test_id("import-status")).to_have_text("queued")
    with app.app_context():
        run_jobs()
    expect(page.get_by_test_id("import-status")).to_have_text("done", timeout=5000)
    expect(page.get_by_test_id("import-inserted")).to_have_text("2")
    expect(page.get_by_test_id("import-error-table").locator("tbody tr")).to_have_text([re.compile(r"^3\s*email")])


def test_saving_a_template_that_fails_for_the_sample_recipient_asks_and_keeps_what_was_typed(
    app, live_server, marketer, page: Page
):
    with app.app_context():
        make_recipient(external_id="ana", attributes={"balance": 12, "low_balance_threshold": 50})
    sign_in(page, "/console/templates/new")
    variables = page.get_by_test_id("template-variables")
    expect(variables.get_by_test_id("variables-recipient")).to_contain_text(
        "recipient.attributes.low_balance_threshold"
    )
    expect(variables.get_by_test_id("variables-notification")).to_contain_text("notification.title")
    page.get_by_label("Sample data (JSON)").fill('{"order": 7}')
    expect(variables.get_by_test_id("variables-data")).to_contain_text("data.order")

    page.get_by_label("Key").fill("order-ready")
    page.get_by_label("Name").fill("Order ready")
    page.get_by_label("In-app title (en)").fill("Order {{ data.order }}")
    page.get_by_label("In-app body (en)").fill("Hi {{ recipient.external_id }}")
    page.get_by_role("button", name="Save new version").click()

    failures = page.get_by_test_id("render-failures")
    expect(failures).to_contain_text("ana")
    expect(failures).to_contain_text("en · In-app · body")
    expect(failures).to_contain_text("external_id")
    expect(page.get_by_label("In-app body (en)")).to_have_value("Hi {{ recipient.external_id }}")
    expect(page.get_by_label("Key")).to_have_value("order-ready")

    page.get_by_role("button", name="Save anyway").click()
    expect(page.get_by_text("Saved order-ready, version 1.")).to_be_visible()

    page.get_by_label("In-app body (en)").fill("Hi {{ recipient.id }}")
    page.get_by_label("Sample data (JSON)").fill('{"order": 7}')
    page.get_by_role("button", name="Save new version").click()
    expect(page.get_by_text("Saved order-ready, version 2.")).to_be_visible()
