"""The workflow editor through the Flask test client: steps built from form fields, add/move/remove, messages
naming the step and field, every save a version with its audit entry, a test run, and a recipient's runs."""

from __future__ import annotations

import re
from html import unescape

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, Workflow, WorkflowRun
from app.workflows.engine import advance
from app.workflows.store import steps_of
from tests.factories import make_recipient, make_staff, make_template

PASSWORD = "correct horse battery"
IN_APP = {"en": {"in_app": {"title": "Hi", "body": "b"}}}
HTMX = {"HX-Request": "true"}


@pytest.fixture
def marketer(app, client):
    make_staff(email="mia@example.com", password=PASSWORD, role="marketer")
    make_template("hello", IN_APP)
    client.post("/console/login", data={"email": "mia@example.com", "password": PASSWORD})
    return client


def form(*steps: tuple[str, dict], **overrides) -> dict:
    """The editor's posted fields for ``steps`` (kind, fields), row ids 1, 2, …"""
    data = {"key": "welcome", "name": "Welcome", "action": "save", "step_row": []}
    for row_id, (kind, fields) in enumerate(steps, start=1):
        data["step_row"].append(str(row_id))
        data[f"s{row_id}-kind"] = kind
        data.update({f"s{row_id}-{name}": value for name, value in fields.items()})
    data.update(overrides)
    return data


CHANNEL = ("channel", {"channel": "in_app", "template": "hello"})


def errors_of(html: str) -> str:
    match = re.search(r'data-testid="form-errors">(.*?)</div>', html, re.S)
    assert match, "no form errors shown"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1)))


def test_marketer_builds_every_kind_of_step_from_form_fields(marketer):
    make_template("alert", {"en": {"in_app": {"title": "t", "body": "b"}, "sms": {"text": "t"}}})
    response = marketer.post(
        "/console/workflows/new",
        data=form(
            ("throttle", {"limit": "2", "window": "3600"}),
            ("digest", {"window": "600", "max_events": "", "key": "data.post_id"}),
            CHANNEL,
            ("delay", {"seconds": "", "until": "09:00"}),
            ("condition", {"test": "outcome", "step": "3", "outcome": "read", "negate": "y", "otherwise": "stop"}),
            ("condition", {"test": "data", "field": "data.vip", "op": "=", "value": "true", "otherwise": "skip"}),
            (
                "escalation",
                {"template": "alert", "until": "read", "c0-channel": "in_app", "c0-wait": "30", "c1-channel": "sms"},
            ),
        ),
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    workflow = db.session.scalar(select(Workflow).where(Workflow.key == "welcome"))
    assert steps_of(workflow) == [
        {"kind": "throttle", "limit": 2, "window": 3600},
        {"kind": "digest", "window": 600, "key": "data.post_id"},
        {"kind": "channel", "channel": "in_app", "template": "hello"},
        {"kind": "delay", "until": "09:00"},
        {"kind": "condition", "step": 2, "outcome": "read", "negate": True, "otherwise": "stop"},
        {
            "kind": "condition",
            "data": {"field": "data.vip", "op": "=", "value": True},
            "negate": False,
            "otherwise": "skip",
        },
        {
            "kind": "escalation",
            "template": "alert",
            "channels": [{"channel": "in_app", "wait": 30}, {"channel": "sms"}],
            "until": "read",
        },
    ]
    # the editor shows the saved steps again, field by field
    page = marketer.get("/console/workflows/welcome/edit").get_data(as_text=True)
    assert 'name="s7-c1-channel"' in page and 'value="09:00"' in page and 'value="data.post_id"' in page


def test_add_move_and_remove_steps_keep_a_condition_on_the_step_it_names(marketer):
    steps = form(
        CHANNEL, ("delay", {"seconds": "60"}), ("condition", {"test": "outcome", "step": "1", "outcome": "read"})
    )
    added = marketer.post("/console/workflows/new", data={**steps, "action": "add:throttle"}, headers=HTMX)
    html = added.get_data(as_text=True)
    assert added.status_code == 200 and html.lstrip().startswith("<form") and 'data-testid="step-4"' in html
    assert 'name="s4-kind" value="throttle"' in html
    moved = marketer.post("/console/workflows/new", data={**steps, "action": "up:2"}, headers=HTMX)
    html = moved.get_data(as_text=True)
    assert html.index('name="s2-kind"') < html.index('name="s1-kind"')
    # the condition still names the channel step (now the second): the JSON view says index 1
    assert '"step": 1' in unescape(html)
    removed = marketer.post("/console/workflows/new", data={**steps, "action": "remove:2"}, headers=HTMX)
    assert 'name="s2-kind"' not in removed.get_data(as_text=True)


def test_a_bad_definition_names_the_step_and_field_and_saves_nothing(marketer):
    cases = [
        (form(("delay", {"seconds": "5", "until": "09:00"})), "Step 1 (delay) · seconds: give exactly one"),
        (form(("channel", {"channel": "sms", "template": "hello"})), "Step 1 (send on a channel) · channel:"),
        (form(CHANNEL, ("throttle", {"limit": "0", "window": "60"})), "Step 2 (throttle) · limit:"),
        (form(("delay", {"seconds": "soon"})), "Step 1 (delay) · seconds:"),
        (
            form(
                (
                    "escalation",
                    {"template": "hello", "until": "delivered", "c0-channel": "in_app", "c1-channel": "push"},
                )
            ),
            "Step 1 (escalation) · channel 1 wait: every channel but the last needs a wait",
        ),
        (
            form(("condition", {"test": "data", "field": "email", "op": "=", "value": "x"})),
            "Step 1 (condition) · data filter:",
        ),
        (form(("condition", {"test": "outcome", "step": "", "outcome": "read"})), "Step 1 (condition) · earlier step:"),
        (form(CHANNEL, name=""), "Give the workflow a name."),
        (
            form(("digest", {"window": "60", "key": "data.a\x00"})),
            "Step 1 (digest) · digest key: must not contain the character U+0000",
        ),
        (form(), "steps:"),
    ]
    for data, expected in cases:
        response = marketer.post("/console/workflows/new", data=data)
        html = response.get_data(as_text=True)
        assert response.status_code == 422, (data, html[:300])
        shown = errors_of(html) if "Step" in expected or expected == "steps:" else html
        assert expected in shown, (expected, shown)
    assert db.session.scalar(select(Workflow)) is None


def test_every_save_is_a_version_audited_and_listed(marketer):
    assert marketer.post("/console/workflows/new", data=form(CHANNEL)).status_code == 302
    edit = form(("delay", {"seconds": "30"}), CHANNEL, base_version="1")
    assert marketer.post("/console/workflows/welcome/edit", data=edit).status_code == 302
    stale = marketer.post("/console/workflows/welcome/edit", data=edit)  # still says it started from version 1
    assert stale.status_code == 409 and "newer version" in stale.get_data(as_text=True)
    workflow = db.session.scalar(select(Workflow))
    assert workflow.current_version == 2 and steps_of(workflow, 1) == [dict(kind="channel", **CHANNEL[1])]
    entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action, e.actor, e.target_id) for e in entries] == [
        ("workflow.create", "mia@example.com", "welcome"),
        ("workflow.save", "mia@example.com", "welcome"),
    ]
    assert entries[1].before["version"] == 1 and entries[1].after["version"] == 2
    assert entries[1].after["steps"][0] == {"kind": "delay", "seconds": 30}
    detail = marketer.get("/console/workflows/welcome").get_data(as_text=True)
    assert 'data-testid="version-1"' in detail and 'data-testid="version-2"' in detail
    old = marketer.get("/console/workflows/welcome/edit?version=1").get_data(as_text=True)
    assert "s2-kind" not in old and 'name="s1-kind" value="channel"' in old


def test_an_htmx_save_redirects_and_an_htmx_bad_save_swaps_the_messages_in(marketer):
    bad = marketer.post("/console/workflows/new", data=form(("throttle", {"limit": "1"})), headers=HTMX)
    assert bad.status_code == 200 and "Step 1 (throttle) · window:" in errors_of(bad.get_data(as_text=True))
    good = marketer.post("/console/workflows/new", data=form(CHANNEL), headers=HTMX)
    assert good.status_code == 204 and good.headers["HX-Redirect"] == "/console/workflows/welcome"


def test_viewers_cannot_edit(app, client):
    make_staff(email="vic@example.com", password=PASSWORD, role="viewer")
    client.post("/console/login", data={"email": "vic@example.com", "password": PASSWORD})
    assert client.get("/console/workflows/new").status_code == 403
    assert client.post("/console/workflows/new", data=form(CHANNEL)).status_code == 403


def test_test_run_triggers_the_saved_workflow_for_a_recipient_and_shows_its_steps(marketer):
    marketer.post("/console/workflows/new", data=form(CHANNEL, ("delay", {"seconds": "3600"})))
    user = make_recipient(external_id="ana").external_id
    unknown = marketer.post("/console/workflows/welcome/test-run", data={"user_id": "nobody", "data": "{}"})
    assert unknown.status_code == 422 and "No recipient has user id" in unknown.get_data(as_text=True)
    not_json = marketer.post("/console/workflows/welcome/test-run", data={"user_id": user, "data": "[1"}, headers=HTMX)
    assert "Not JSON" in not_json.get_data(as_text=True)
    nul = marketer.post("/console/workflows/welcome/test-run", data={"user_id": "a\x00", "data": '{"x": "\\u0000"}'})
    assert nul.status_code == 422 and "U+0000" in nul.get_data(as_text=True)
    assert db.session.scalar(select(WorkflowRun)) is None

    response = marketer.post(
        "/console/workflows/welcome/test-run", data={"user_id": user, "data": '{"who": "Ana"}'}, headers=HTMX
    )
    html = response.get_data(as_text=True)
    run = db.session.scalar(select(WorkflowRun))
    run_id = run.id
    assert response.status_code == 200 and f'data-testid="run-{run_id}"' in html and run.data == {"who": "Ana"}
    audit = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "workflow.test_run"))
    assert audit.after == {"run_id": run_id, "user_id": "ana", "version": 1}

    advance(run_id)  # what the queued job does, in this process
    page = marketer.get(f"/console/workflow-runs/{run_id}").get_data(as_text=True)
    states = re.findall(r'data-testid="step-state">(\w+)', page)
    assert states == ["done", "waiting"] and "in_app" in page
    history = marketer.get("/console/recipients/ana").get_data(as_text=True)
    assert f'data-testid="run-{run_id}"' in history and re.findall(r'data-testid="step-state">(\w+)', history) == states
