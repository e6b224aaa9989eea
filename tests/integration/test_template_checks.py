"""A template can't fail silently: the editor's save, a campaign's launch and a rule's enabling render it first,
test-sends report what really happened, and a campaign's failures are grouped by error code (both databases)."""

from __future__ import annotations

import json

import pytest
from flask import g
from sqlalchemy import func, select

from app.campaigns import store, testsend
from app.console.campaigns import TEST_RESULT_POLLS
from app.extensions import db
from app.models import Campaign, Delivery, Rule, Template
from app.models.campaigns import DRAFT, FINISHED
from app.render_checks import attribute_keys, sample_recipients, template_variables
from tests.factories import make_recipient, make_staff, make_template

PASSWORD = "correct horse battery"
# The Spanish variant reads an attribute only some recipients have.
PLAN_VARIANTS = {
    "en": {
        "in_app": {"title": "Hello {{ recipient.id }}", "body": "Welcome."},
        "email": {"subject": "Hi", "html": "<p>Hi</p>", "text": "Hi"},
    },
    "es": {
        "in_app": {"title": "Hola", "body": "Tu plan: {{ recipient.attributes.plan }}"},
        "email": {"subject": "Hola", "html": "<p>Plan {{ recipient.attributes.plan }}</p>", "text": "Hola"},
    },
}


@pytest.fixture
def marketer(app):
    return make_staff(email="mia@example.com", password=PASSWORD, role="marketer")


def sign_in(client) -> None:
    response = client.post("/console/login", data={"email": "mia@example.com", "password": PASSWORD})
    assert response.status_code == 302


def fields(template_id: int, channels=("in_app", "email"), audience=None) -> store.CampaignFields:
    return store.CampaignFields(
        name="Plans",
        template_id=template_id,
        audience_filter=audience or {"all": []},
        audience_name=None,
        channels=list(channels),
        schedule="now",
        send_at=None,
        local_time=None,
        throttle_per_minute=None,
        ends_at=None,
    )


# -- campaigns ---------------------------------------------------------------------------------


def test_launch_is_refused_naming_the_recipient_and_the_error_when_the_template_fails_for_one(app, client, marketer):
    template = make_template("plans", type="marketing", category="promo", variants=PLAN_VARIANTS)
    for n in range(60):  # more English recipients than the sample holds: the Spanish one is found by its locale
        make_recipient(external_id=f"en-{n:02d}", attributes={"plan": "pro"})
    make_recipient(external_id="es-noplan", locale="es", attributes={})
    campaign = store.create_campaign(fields(template.id), marketer)

    problems = store.launch(campaign, marketer)

    assert len(problems) == 1
    assert "es-noplan" in problems[0] and "in_app" in problems[0] and "plan" in problems[0]
    assert db.session.get(Campaign, campaign.id).status == DRAFT
    sign_in(client)
    response = client.post(f"/console/campaigns/{campaign.id}/launch", follow_redirects=True)
    assert "does not render for recipient es-noplan" in response.get_data(as_text=True)
    assert db.session.get(Campaign, campaign.id).status == DRAFT


def test_launch_checks_every_targeted_channel(app, marketer):
    variants = {
        "en": {
            "in_app": {"title": "Hi", "body": "Fine"},
            "email": {"subject": "{{ data.order }}", "html": "<p>x</p>", "text": "x"},
        }
    }
    template = make_template("orders", type="marketing", category="promo", variants=variants)
    make_recipient(external_id="ana")
    in_app_only = store.create_campaign(fields(template.id, channels=["in_app"]), marketer)
    both = store.create_campaign(fields(template.id), marketer)

    problems = store.launch(both, marketer)
    assert len(problems) == 1 and "ana" in problems[0] and "email" in problems[0] and "order" in problems[0]
    assert store.launch(in_app_only, marketer) == []


def test_audience_sample_holds_every_locale_and_is_bounded(app):
    for n in range(70):
        make_recipient(external_id=f"en-{n:02d}")
    for locale in ("pt-BR", "ja"):
        make_recipient(external_id=f"late-{locale}", locale=locale)
    make_recipient(external_id="no-zone", timezone=None)
    from sqlalchemy import true

    sample = sample_recipients(true())
    assert len(sample) == 50
    assert {"late-pt-BR", "late-ja", "no-zone", "en-00"} <= {r.external_id for r in sample}


# -- rules -------------------------------------------------------------------------------------


def rule_form(template_key: str, enabled: bool = True) -> dict:
    return {
        "name": "Plans",
        "enabled": "y" if enabled else "",
        "audience": json.dumps({"all": []}),
        "type": "transactional",
        "category": "low_balance",
        "priority": "normal",
        "template_key": template_key,
        "channels": ["in_app"],
        "window_start": "09:00",
        "window_end": "19:00",
        "every_days": "1",
        "no_timezone_policy": "utc",
    }


def test_enabling_a_rule_whose_template_fails_for_its_audience_is_refused(app, client, marketer):
    make_template("plans", variants=PLAN_VARIANTS)
    make_recipient(external_id="es-noplan", locale="es")
    sign_in(client)

    refused = client.post("/console/rules/new", data=rule_form("plans"))
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert "does not render for recipient es-noplan" in page and "plan" in page
    assert db.session.scalar(select(func.count()).select_from(Rule)) == 0

    disabled = client.post("/console/rules/new", data=rule_form("plans", enabled=False))
    assert disabled.status_code == 302
    rule = db.session.scalar(select(Rule))
    assert client.post(f"/console/rules/{rule.id}", data=rule_form("plans")).status_code == 422
    db.session.refresh(rule)
    assert rule.enabled is False


def test_a_rule_whose_template_renders_for_its_audience_is_enabled(app, client, marketer):
    make_template("plans", variants=PLAN_VARIANTS)
    make_recipient(external_id="es-pro", locale="es", attributes={"plan": "pro"})
    sign_in(client)
    assert client.post("/console/rules/new", data=rule_form("plans")).status_code == 302
    assert db.session.scalar(select(Rule.enabled)) is True


# -- the editor ----------------------------------------------------------------------------------


def editor_form(**overrides) -> dict:
    values = {
        "key": "plans",
        "name": "Plans",
        "category": "general",
        "type": "marketing",
        "default_locale": "en",
        "locales": ["en"],
        "v-en-in_app-title": "Hi",
        "v-en-in_app-body": "Plan {{ recipient.attributes.plan }}",
        "preview_user": "",
        "sample_data": "{}",
        "action": "save",
    }
    values.update(overrides)
    return values


def test_saving_a_template_that_fails_for_the_sample_recipient_asks_first_and_keeps_the_form(app, client, marketer):
    make_recipient(external_id="ana", attributes={})
    sign_in(client)

    first = client.post("/console/templates/new", data=editor_form())
    assert first.status_code == 422
    page = first.get_data(as_text=True)
    assert 'data-testid="render-failures"' in page and "ana" in page
    assert "en · In-app · body" in page and "plan" in page
    assert 'value="save_anyway"' in page
    assert "Plan {{ recipient.attributes.plan }}" in page  # what was typed is still there
    assert db.session.scalar(select(func.count()).select_from(Template)) == 0

    anyway = client.post("/console/templates/new", data=editor_form(action="save_anyway"))
    assert anyway.status_code == 302
    assert db.session.scalar(select(Template.key)) == "plans"


def test_saving_checks_the_preview_recipient_with_the_sample_data(app, client, marketer):
    make_recipient(external_id="ana", attributes={})
    make_recipient(external_id="bo", attributes={"plan": "pro"})
    sign_in(client)
    body = "Plan {{ recipient.attributes.plan }}, order {{ data.order }}"
    failing = client.post(
        "/console/templates/new", data=editor_form(**{"v-en-in_app-body": body, "preview_user": "bo"})
    )
    assert failing.status_code == 422 and "order" in failing.get_data(as_text=True)
    saved = client.post(
        "/console/templates/new",
        data=editor_form(**{"v-en-in_app-body": body, "preview_user": "bo", "sample_data": '{"order": 7}'}),
    )
    assert saved.status_code == 302


def test_editor_lists_recipient_fields_attributes_seen_data_and_notification_fields(app, client, marketer):
    make_recipient(external_id="ana", attributes={"plan": "pro", "first name": "Ana"})
    make_recipient(external_id="bo", attributes={"balance": 12})
    assert attribute_keys() == ["balance", "first name", "plan"]
    variables = template_variables({"order": 1}, attribute_keys())
    assert "recipient.id" in variables["recipient"] and "recipient.attributes.plan" in variables["recipient"]
    assert "recipient.attributes['first name']" in variables["recipient"]
    assert variables["data"] == ["data.order"] and "notification.title" in variables["notification"]

    sign_in(client)
    page = client.get("/console/templates/new").get_data(as_text=True)
    assert 'data-testid="template-variables"' in page and "recipient.attributes.balance" in page
    preview = client.post("/console/templates/preview", data=editor_form(sample_data='{"order": 7, "items": []}'))
    assert 'id="variables-data"' in preview.get_data(as_text=True)
    assert "data.items" in preview.get_data(as_text=True) and "data.order" in preview.get_data(as_text=True)


# -- test-sends and failures ---------------------------------------------------------------------


def test_test_send_reports_each_recipients_real_outcome_per_channel(app, client, run_jobs, smtp_server, marketer):
    template = make_template("plans", type="marketing", category="promo", variants=PLAN_VARIANTS)
    make_recipient(external_id="ana", attributes={"plan": "pro"})
    make_recipient(external_id="es-noplan", locale="es", attributes={})
    make_recipient(external_id="no-mail", email=None, attributes={"plan": "pro"})
    cid = store.create_campaign(fields(template.id), marketer).id
    sign_in(client)

    sent = client.post(f"/console/campaigns/{cid}/test", data={"user_ids": "ana, es-noplan, no-mail, nobody"})
    page = sent.get_data(as_text=True)
    assert "nobody: " in page and "no recipient has this user id" in page
    assert "queued" in page and "hx-get" in page  # nothing has run yet: the panel polls
    waiting = _test_ids(db.session.get(Campaign, cid))
    tired = client.get(
        f"/console/campaigns/{cid}/test-results",
        query_string={"n": waiting, "poll": TEST_RESULT_POLLS},
        headers={"HX-Request": "true"},
    ).get_data(as_text=True)
    assert "hx-get" not in tired and "Still waiting: are the workers running?" in tired  # no endless polling

    run_jobs()
    g.pop("_login_user", None)  # the drained queue ended the test's session; let the next request load the user again
    campaign = db.session.get(Campaign, cid)
    ids = _test_ids(campaign)
    outcomes = {o.user_id: {c.channel: c for c in o.channels} for o in testsend.test_outcomes(campaign, ids)}
    assert outcomes["ana"]["in_app"].label == "sent" and outcomes["ana"]["email"].label == "sent"
    assert outcomes["es-noplan"]["in_app"].label == "failed"
    assert "render_error" in outcomes["es-noplan"]["in_app"].detail and "plan" in outcomes["es-noplan"]["in_app"].detail
    assert outcomes["no-mail"]["email"].label == "suppressed"

    polled = client.get(
        f"/console/campaigns/{cid}/test-results", query_string={"n": ids}, headers={"HX-Request": "true"}
    )
    html = polled.get_data(as_text=True)
    assert "hx-get" not in html  # every delivery is final: polling stops
    assert 'data-testid="test-outcome-es-noplan-in_app"' in html and "failed" in html


def _test_ids(campaign: Campaign) -> list[str]:
    from app.models import Notification

    return [
        n.id
        for n in db.session.scalars(select(Notification).where(Notification.campaign_id.is_(None)))
        if (n.data or {}).get("campaign_id") == campaign.id
    ]


def test_campaign_failures_are_grouped_by_error_code_with_an_example(app, client, run_jobs, smtp_server, marketer):
    template = make_template("plans", type="marketing", category="promo", variants=PLAN_VARIANTS)
    make_recipient(external_id="ana", attributes={"plan": "pro"})
    for n in range(3):
        make_recipient(external_id=f"es-{n}", locale="es", attributes={})
    campaign = store.create_campaign(fields(template.id), marketer)
    campaign.status, campaign.template_version = "running", 1  # as if launched before the check existed
    db.session.commit()
    cid = campaign.id
    from app.campaigns.batches import enqueue_plan

    enqueue_plan(cid)
    run_jobs()

    assert db.session.get(Campaign, cid).status == FINISHED
    groups = store.failure_groups(cid)
    assert [(g.error_code, g.count) for g in groups] == [("render_error", 6)]
    assert "plan" in groups[0].example
    sign_in(client)
    page = client.get(f"/console/campaigns/{cid}").get_data(as_text=True)
    assert 'data-testid="failure-render_error"' in page and ">6<" in page
    assert 'data-testid="campaign-status">finished<' in page and ">Pause<" not in page
    controls = client.get(f"/console/campaigns/{cid}/controls", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-swap-oob="true">finished<' in controls and "Cancel campaign" not in controls
    assert db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "FAILED")) == 6
