"""The console fits the screen: every page, as an admin with realistic data, at 1280, 1440 and 1920 px wide.

An element "overflows" when its content is wider than its own box (``scrollWidth > clientWidth``) or when its
box sticks out to the right of its parent's or of the viewport. Scroll containers by design (computed
``overflow-x: auto`` or ``scroll``, such as the ``.table-wrap`` around wide tables, and form controls, whose
text scrolls inside them) are not counted as overflowing, and what is inside them is not compared with the
page: the container scrolls it.
"""

from __future__ import annotations

import copy
import io

import pytest
from playwright.sync_api import Page, expect
from werkzeug.datastructures import FileStorage

from app.audiences.importer import create_import
from app.audiences.store import save_audience
from app.campaigns import store as campaigns
from app.demo import ADMIN_EMAIL, load_demo
from app.extensions import db
from app.models import Campaign, Delivery, Notification, Rule, StaffUser, Suppression, Template, TemplateVersion
from app.models.types import utcnow
from app.topics import store as topic_store
from tests.factories import make_notification, make_recipient, make_staff

WIDTHS = (1280, 1440, 1920)
HEIGHT = 900

# Returns one line per overflowing element: "<what> <how>", the element named by tag, id, classes and test id.
FIND_OVERFLOW = """() => {
  const slack = 1;
  const viewport = document.documentElement.clientWidth;
  const name = (el) => {
    let label = el.tagName.toLowerCase();
    if (el.id) label += "#" + el.id;
    for (const c of el.classList) label += "." + c;
    const testid = el.getAttribute("data-testid");
    if (testid) label += `[data-testid=${testid}]`;
    const text = (el.innerText || el.value || "").trim().replace(/\\s+/g, " ").slice(0, 40);
    return text ? `${label} "${text}"` : label;
  };
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const control = (el) => ["INPUT", "SELECT", "TEXTAREA", "IFRAME"].includes(el.tagName);
  const insideScroller = (el) => {
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (scrolls(up)) return true;
    }
    return false;
  };
  const problems = [];
  if (document.documentElement.scrollWidth > viewport + slack) {
    problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth}px wide in ${viewport}px`);
  }
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (box.width <= 1 || box.height <= 1 || style.visibility === "hidden" || el.closest("svg")) continue;
    if (style.display !== "inline" && !control(el) && !scrolls(el) && el.scrollWidth > el.clientWidth + slack
        && el.clientWidth > 0) {
      problems.push(`${name(el)} content ${el.scrollWidth}px wide in ${el.clientWidth}px`);
      continue;
    }
    if (insideScroller(el)) continue;
    const parent = el.parentElement;
    const parentBox = parent.getBoundingClientRect();
    if (box.right > parentBox.right + slack && parent !== document.body) {
      problems.push(`${name(el)} ends at ${Math.round(box.right)}px, past its parent ${name(parent)} at ${Math.round(parentBox.right)}px`);
    } else if (box.right > viewport + slack) {
      problems.push(`${name(el)} ends at ${Math.round(box.right)}px, past the viewport (${viewport}px)`);
    }
  }
  return problems;
}"""


def _seed_console(app, run_jobs) -> dict:
    """The demo's data (recipients, templates, the low-balance rule, staff, an API key) plus a launched campaign,
    a draft with a long name, a second template version, a saved audience with a nested group, an import with
    errors, a dead letter, a suppression and a recipient with a long email address and history. Returns the admin's
    password and the ids the pages need."""
    with app.app_context():
        credentials = load_demo(app.instance_path, count=300)
        admin = db.session.scalars(db.select(StaffUser).where(StaffUser.email == ADMIN_EMAIL)).one()
        digest = db.session.scalars(db.select(Template).where(Template.key == "weekly_digest")).one()
        edited = copy.deepcopy(digest.version(1).variants)
        edited["en"]["email"]["subject"] = "Your week at a glance: payments, transfers, savings goals and card spending"
        digest.versions.append(TemplateVersion(version=2, variants=edited, created_by=admin.id))
        digest.current_version = 2
        tree = {
            "all": [
                {"field": "locale", "op": "=", "value": "en"},
                {"field": "attributes.balance", "op": "<", "field_value": "attributes.low_balance_threshold"},
                {
                    "any": [
                        {"field": "timezone", "op": "in", "value": ["Europe/Lisbon", "Europe/London"]},
                        {"field": "last_seen_at", "op": "within_days", "value": 30},
                    ]
                },
            ]
        }
        audience = save_audience(None, "Low balance, English speakers in Lisbon or London, seen lately", tree, admin)
        fields = campaigns.CampaignFields(
            name="Weekly digest for every English speaker",
            template_id=digest.id,
            audience_filter={"all": [{"field": "locale", "op": "=", "value": "en"}]},
            audience_name=None,
            channels=["in_app"],
            schedule="now",
            send_at=None,
            local_time=None,
            throttle_per_minute=None,
            ends_at=None,
        )
        launched = campaigns.create_campaign(fields, admin)
        assert campaigns.launch(launched, admin) == []
        fields.name = "Spring promotion for customers who opened the app in the last thirty days, second wave (EU)"
        draft = campaigns.create_campaign(fields, admin)
        upload = FileStorage(
            io.BytesIO(
                b"user_id,email,timezone,plan\nimported-1,ana@example.com,Europe/Lisbon,pro\n"
                b"imported-2,not-an-email,Mars/Olympus_Mons,free\n"
            ),
            filename="customers-export-2026-11-30-marketing-team-final-v2.csv",
            content_type="text/csv",
        )
        upload_job = create_import(upload, admin)
        person = make_recipient(
            external_id="customer-7f3c9e12-4b1a-4d2e-9c6f-0a8b7e5d4c3b",
            email="alexandra.konstantinopoulou-fitzgerald@subsidiary.example-holdings.co.uk",
            phone="+351912345678",
            attributes={"plan": "premium", "balance": 12.5, "low_balance_threshold": 50},
        )
        notification = make_notification(
            person,
            channels=["in_app", "email"],
            title="Your balance is below your threshold of 50.00 EUR",
            body="Top up in the app to keep your card payments and scheduled transfers running without interruption.",
            data={
                "account_id": "acc_0b9d6f3e7a2c4e1b8d5f",
                "balance": "12.50",
                "currency": "EUR",
                "deep_link": "herald-demo://accounts/acc_0b9d6f3e7a2c4e1b8d5f/top-up?source=low-balance-alert",
            },
            idempotency_key="low-balance-customer-7f3c9e12-4b1a-4d2e-9c6f-0a8b7e5d4c3b-2026-11-30",
        )
        db.session.add(
            Delivery(
                notification_id=notification.id,
                channel="email",
                status="FAILED",
                attempts=6,
                error_code="smtp_rejected",
                last_error="550 5.1.1 <alexandra.konstantinopoulou-fitzgerald@subsidiary.example-holdings.co.uk>: "
                "Recipient address rejected: User unknown in virtual mailbox table",
                dead_lettered_at=utcnow(),
            )
        )
        db.session.add(
            Suppression(
                channel="email",
                reason="hard bounce (550 5.1.1 user unknown)",
                address="alexandra.konstantinopoulou-fitzgerald@subsidiary.example-holdings.co.uk",
            )
        )
        db.session.commit()
        topic, _ = topic_store.upsert_topic(
            "customers-in-the-spring-promotion-pilot-group-eu-west-2026",
            "Customers in the spring promotion pilot group (EU West, 2026)",
            True,
        )
        topic_store.add_subscribers(topic, [person.external_id])
        ids = {
            "topic": topic.key,
            "audience": audience.id,
            "launched": launched.id,
            "draft": draft.id,
            "import": upload_job.id,
            "template": digest.id,
            "rule": db.session.scalars(db.select(Rule.id)).first(),
            "person": person.external_id,
            "notification": notification.id,
        }
    run_jobs()
    with app.app_context():
        db.session.expire_all()
        assert db.session.get(Campaign, ids["launched"]).planned > 0
        assert db.session.scalar(db.select(db.func.count()).select_from(Notification)) > 1
    return {"password": credentials.admin_password, **ids}


def console_pages(ids: dict) -> dict[str, str]:
    """Every console page an admin can open, by a name a failure can quote."""
    return {
        "dashboard": "/console/",
        "templates list": "/console/templates",
        "template editor (new)": "/console/templates/new",
        "template editor (edit)": f"/console/templates/{ids['template']}",
        "template versions": f"/console/templates/{ids['template']}/versions",
        "template diff": f"/console/templates/{ids['template']}/diff",
        "audiences list": "/console/audiences",
        "audience builder (new)": "/console/audiences/new",
        "audience builder (saved)": f"/console/audiences/{ids['audience']}",
        "audience import": "/console/audiences/import",
        "audience import result": f"/console/audiences/imports/{ids['import']}",
        "campaigns list": "/console/campaigns",
        "campaign form (new)": "/console/campaigns/new",
        "campaign form (edit draft)": f"/console/campaigns/{ids['draft']}/edit",
        "campaign page (launched)": f"/console/campaigns/{ids['launched']}",
        "campaign page (draft)": f"/console/campaigns/{ids['draft']}",
        "workflows list": "/console/workflows",
        "workflow page": "/console/workflows/comment-digest",
        "workflow editor (new)": "/console/workflows/new",
        "workflow editor (edit)": "/console/workflows/security-alert/edit",
        "rules list": "/console/rules",
        "rule form (new)": "/console/rules/new",
        "rule form (edit)": f"/console/rules/{ids['rule']}",
        "recipients list": f"/console/recipients?q={ids['person'][:8]}",
        "recipient page": f"/console/recipients/{ids['person']}",
        "recipient erase": f"/console/recipients/{ids['person']}/erase",
        "suppressions": "/console/suppressions",
        "operations: delivery log": f"/console/operations?q={ids['person']}",
        "operations: notification timeline": f"/console/operations/notifications/{ids['notification']}",
        "operations: dead letters": "/console/operations/dead-letters",
        "operations: health": "/console/operations/health",
        "analytics": "/console/analytics",
        "audit log": "/console/audit",
        "API keys": "/console/operations/api-keys",
        "topics list": "/console/topics",
        "topic page": f"/console/topics/{ids['topic']}",
    }


def sign_in(page: Page, password: str) -> None:
    page.goto("/console/login")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("signed-in-email")).to_have_text(ADMIN_EMAIL)


def test_every_console_page_fits_1280_1440_and_1920_px_without_horizontal_overflow(
    app, live_server, run_jobs, page: Page
):
    seeded = _seed_console(app, run_jobs)
    sign_in(page, seeded["password"])
    found = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT})
        for title, path in console_pages(seeded).items():
            response = page.goto(path)
            assert response.ok, f"{title} ({path}) answered {response.status}"
            page.wait_for_timeout(300)  # htmx requests fired on load settle
            found += [f"{title} at {width}px: {problem}" for problem in page.evaluate(FIND_OVERFLOW)]
    assert not found, "elements wider than their container:\n" + "\n".join(found)


def _border_is_red(locator) -> bool:
    return locator.evaluate("el => getComputedStyle(el).borderTopColor") == "rgb(180, 35, 24)"  # var(--danger)


@pytest.mark.parametrize("width", (1280, 1366, 1600, 1920))
def test_audience_builder_keeps_its_controls_in_its_card_and_marks_only_invalid_ones(
    app, live_server, page: Page, width
):
    with app.app_context():
        staff = make_staff(email="mia@example.com", password="correct horse battery", role="marketer")
        make_recipient(external_id="ana", attributes={"balance": 10, "low_balance_threshold": 50})
        audience = save_audience(
            None,
            "Low balance in Lisbon or London",
            {
                "all": [
                    {"field": "attributes.balance", "op": "<", "field_value": "attributes.low_balance_threshold"},
                    {
                        "any": [
                            {"field": "timezone", "op": "in", "value": ["Europe/Lisbon", "Europe/London"]},
                            {"field": "last_seen_at", "op": "within_days", "value": 30},
                        ]
                    },
                ]
            },
            staff,
        )
        audience_id = audience.id
    page.set_viewport_size({"width": width, "height": HEIGHT})
    page.goto(f"/console/audiences/{audience_id}")
    page.get_by_label("Email").fill("mia@example.com")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in").click()

    card = page.locator("#builder").bounding_box()
    panel = page.get_by_role("complementary", name="Who matches").bounding_box()
    for control in [
        *page.locator(".condition__value").all(),
        *page.get_by_role("button", name="Remove").all(),
        page.get_by_role("button", name="Save audience"),
    ]:
        box = control.bounding_box()
        assert box["x"] + box["width"] <= card["x"] + card["width"] and box["x"] + box["width"] < panel["x"], control
    assert not page.evaluate(FIND_OVERFLOW)

    field, value = page.get_by_label("Field of condition 1"), page.get_by_label("Value of condition 1")
    assert not _border_is_red(field) and not _border_is_red(value)
    field.fill("balanse")  # a typo in the field: only the field is marked, live
    expect(page.get_by_test_id("row-error-1")).to_contain_text("unknown field 'balanse'")
    assert _border_is_red(field) and not _border_is_red(value)
    field.fill("attributes.balance")
    expect(page.get_by_test_id("row-error-1")).to_have_text("")
    assert not _border_is_red(field) and not _border_is_red(value)

    page.get_by_label("Compare condition 1 with").select_option("value")
    value.fill("cheap")  # a word where "<" needs a number: only the value is marked, also after a full reload
    expect(page.get_by_test_id("row-error-1")).to_contain_text("needs a number")
    page.get_by_role("button", name="Count", exact=True).click()
    expect(page.get_by_test_id("row-error-1")).to_contain_text("needs a number")
    assert _border_is_red(page.get_by_label("Value of condition 1"))
    assert not _border_is_red(page.get_by_label("Field of condition 1"))
    assert not _border_is_red(page.get_by_label("Value of condition 2"))
