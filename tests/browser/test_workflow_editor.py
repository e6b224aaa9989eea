"""The workflow editor as a marketer uses it: build a two-step workflow from form fields, save it, test-run it for
a recipient and watch the run's steps; the recipient's page shows the run too."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.factories import make_recipient, make_staff, make_template

EMAIL = "wes@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
def marketer(app):
    with app.app_context():
        make_staff(email=EMAIL, password=PASSWORD, role="marketer")
        make_template("hello", {"en": {"in_app": {"title": "Hello", "body": "b"}}})
        make_recipient(external_id="ana")


def test_marketer_builds_saves_and_test_runs_a_two_step_workflow(page: Page, marketer, run_jobs):
    page.goto("/console/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto("/console/workflows")
    page.get_by_role("link", name="New workflow").click()
    page.get_by_label("Key").fill("welcome")
    page.get_by_label("Name").fill("Welcome")
    step_one = page.get_by_test_id("step-1")
    step_one.get_by_label("Channel").select_option("in_app")
    step_one.get_by_label("Template").select_option("hello")
    page.get_by_role("button", name="Delay").click()  # htmx swaps the form; what was typed stays
    step_two = page.get_by_test_id("step-2")
    expect(step_two).to_contain_text("Step 2 · Delay")
    expect(page.get_by_label("Key")).to_have_value("welcome")
    step_two.get_by_label("Wait (seconds)").fill("3600")
    page.get_by_role("button", name="Save new version").click()

    expect(page).to_have_url(re.compile(r"/console/workflows/welcome$"))
    expect(page.get_by_test_id("versions").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_test_id("step-counts").locator("tbody tr")).to_have_count(2)

    test_run = page.get_by_test_id("test-run")
    test_run.get_by_label("Recipient (user id)").fill("ana")
    test_run.get_by_role("button", name="Run for this recipient").click()
    steps = test_run.get_by_test_id("run-steps")
    expect(steps).to_be_visible()
    run_jobs()  # the worker advances the run; the panel refreshes itself while the run is running
    expect(steps.get_by_test_id("step-state")).to_have_text(["done", re.compile(r"^waiting until")], timeout=10_000)
    expect(steps.locator("tr[data-step='0']").get_by_test_id("step-sent")).to_contain_text("in_app")

    test_run.get_by_role("link", name="ana").click()
    runs = page.get_by_test_id("workflow-runs")
    expect(runs.get_by_test_id("step-state")).to_have_text(["done", re.compile(r"^waiting until")])
