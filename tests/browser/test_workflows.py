"""Workflows in the console: the list with runs by status, and a workflow's steps with per-step counts."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from app.workflows.definitions import WorkflowSave
from app.workflows.engine import advance
from app.workflows.schemas import WorkflowTrigger
from app.workflows.store import save_workflow
from app.workflows.trigger import trigger_workflow
from tests.factories import make_recipient, make_staff, make_template

EMAIL = "wes@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
def runs(app):
    with app.app_context():
        make_staff(email=EMAIL, password=PASSWORD, role="marketer")
        make_template("hello", {"en": {"in_app": {"title": "Hello", "body": "b"}}})
        steps = [
            {"kind": "condition", "data": {"field": "data.vip", "op": "=", "value": True}},
            {"kind": "channel", "channel": "in_app", "template": "hello"},
            {"kind": "delay", "seconds": 3600},
        ]
        save_workflow("vip-welcome", WorkflowSave.model_validate({"name": "VIP welcome", "steps": steps}))
        for n in range(5):
            user = make_recipient().external_id
            accepted = trigger_workflow(
                WorkflowTrigger(workflow="vip-welcome", user_id=user, data={"vip": n < 3}), None, None
            )
            advance(accepted.workflow_run_id)


def test_staff_see_runs_by_status_and_per_step_counts(page: Page, runs):
    page.goto("/console/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Workflows", exact=True).click()
    expect(page).to_have_url(re.compile(r"/console/workflows$"))
    row = page.get_by_test_id("workflow-list").locator("tbody tr").filter(has_text="VIP welcome")
    expect(row.get_by_test_id("runs-running")).to_have_text("3")  # waiting in the delay
    expect(row.get_by_test_id("runs-stopped")).to_have_text("2")  # not VIP: the condition stopped them
    page.get_by_role("link", name="VIP welcome").click()
    steps = page.get_by_test_id("step-counts")
    expect(steps.locator("tr[data-step='0']").get_by_test_id("entered")).to_have_text("5")
    expect(steps.locator("tr[data-step='0']").get_by_test_id("stopped")).to_have_text("2")
    expect(steps.locator("tr[data-step='1']").get_by_test_id("sent")).to_have_text("3")
    expect(steps.locator("tr[data-step='2']").get_by_test_id("waiting")).to_have_text("3")
    expect(page.get_by_test_id("runs").locator("tbody tr")).to_have_count(5)
