import stat
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from sqlalchemy import func, select

from app.api.keys import find_active_key
from app.campaigns import planning
from app.delivery.rendering import RenderError, renderer_for
from app.demo import ADMIN_EMAIL, DEMO_RULE_NAME, MARKETER_EMAIL, RECIPIENT_COUNT, credentials_path, read_credentials
from app.extensions import db
from app.models import ApiKey, Device, Notification, Preference, Recipient, Rule, StaffUser, Template
from app.pipeline.facts import render_context
from app.render_checks import probe_notification
from app.rules.evaluate import dry_run, evaluate_rule
from app.rules.windows import country_zones

REQUIRED_TIME_ZONES = {
    "Asia/Singapore",
    "America/Los_Angeles",
    "Pacific/Auckland",
    "Pacific/Kiritimati",
    "America/Sao_Paulo",
    "Europe/London",
    "Asia/Kolkata",
    "Australia/Adelaide",
}


@pytest.fixture
def seeded(app, runner):
    """Run `flask seed-demo` once; yield its output and leave no credentials file behind."""
    path = credentials_path(app.instance_path)
    path.unlink(missing_ok=True)
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        yield result.output
    path.unlink(missing_ok=True)


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_seed_demo_loads_recipients_across_time_zones_and_locales(seeded):
    recipients = db.session.scalars(select(Recipient)).all()
    assert len(recipients) == RECIPIENT_COUNT
    zones = {r.timezone for r in recipients if r.timezone}
    assert len(zones) >= 20
    assert REQUIRED_TIME_ZONES <= zones
    assert 0.05 < sum(r.timezone is None for r in recipients) / len(recipients) < 0.15
    assert {"en", "es", "fr", "de", "pt-BR", "ja"} <= {r.locale for r in recipients}
    assert all(r.external_id.startswith("demo-") and r.email.endswith("@example.test") for r in recipients)
    assert sum(r.hard_stop for r in recipients) > 0
    assert sum(r.quiet_start is not None for r in recipients) > len(recipients) / 10
    assert sum(r.last_seen_at is not None for r in recipients) > len(recipients) / 2


def test_every_demo_phone_is_a_valid_e164_number(seeded):
    phones = db.session.scalars(select(Recipient.phone).where(Recipient.phone.is_not(None))).all()
    assert len(phones) > RECIPIENT_COUNT / 2
    invalid = [p for p in phones if not p.startswith("+") or not phonenumbers.is_valid_number(phonenumbers.parse(p))]
    assert invalid == []


def test_about_five_percent_of_demo_recipients_are_below_their_balance_threshold(seeded):
    attributes = db.session.scalars(select(Recipient.attributes)).all()
    low = [a for a in attributes if a["balance"] < a["low_balance_threshold"]]
    assert 0.03 < len(low) / len(attributes) < 0.08
    assert all(
        isinstance(a["balance"], float) and a["plan"] in ("free", "pro") and len(a["country"]) == 2 for a in attributes
    )


def test_demo_devices_and_preferences(seeded):
    assert count(Device, Device.platform == "ios") > 300
    assert count(Device, Device.platform == "android") > 300
    web = db.session.scalars(select(Device).where(Device.platform == "web")).all()
    assert web and all(d.token.startswith("https://") and d.p256dh and d.auth for d in web)
    assert (
        count(
            Preference, Preference.channel == "email", Preference.category == "marketing", Preference.enabled.is_(False)
        )
        > 100
    )
    assert count(Preference, Preference.category == "*", Preference.enabled.is_(False)) > 10


def test_demo_templates_cover_each_type_and_channel(seeded):
    templates = {t.key: t for t in db.session.scalars(select(Template))}
    assert {key: (t.type, t.category) for key, t in templates.items()} == {
        "welcome": ("transactional", "account"),
        "low_balance": ("transactional", "low_balance"),
        "weekly_digest": ("marketing", "marketing"),
        "security_alert": ("security", "security"),
        "comment": ("transactional", "comments"),
        "comment_digest": ("transactional", "comments"),
    }
    low_balance = templates["low_balance"].version().variants
    assert set(low_balance) == {"en", "es"}
    assert set(low_balance["en"]) == {"in_app", "email", "sms", "push"}
    assert set(low_balance["en"]["email"]) == {"subject", "html", "text"}
    assert "recipient.attributes.balance" in low_balance["en"]["sms"]["text"]
    assert "recipient.attributes.low_balance_threshold" in low_balance["en"]["in_app"]["body"]


def test_every_demo_template_renders_for_every_demo_recipient_on_every_channel_and_locale(seeded):
    """What a campaign or the rule would send: each template's channels (web push through its push variant),
    every recipient (so every locale and attribute shape the demo creates), with the data a campaign carries
    ({}) and the data the daily rule carries."""
    recipients = db.session.scalars(select(Recipient)).all()
    assert {r.locale for r in recipients} >= {"en", "es", "fr", "de", "pt-BR", "ja"}
    failures = []
    for template in db.session.scalars(select(Template)):
        renderer = renderer_for(template, template.current_version)
        channels = planning.template_channels(template.version().variants)
        assert channels, template.key
        for data in ({}, {"rule_id": 1, "local_date": "2026-11-30"}):
            notification = probe_notification(template, data)
            for recipient in recipients:
                context = render_context(recipient, notification)
                for channel in sorted(channels):
                    try:
                        renderer.render(channel, recipient.locale, context)
                    except RenderError as error:
                        failures.append(
                            f"{template.key} {channel} {recipient.external_id} ({recipient.locale}): {error}"
                        )
    assert failures == []


def test_second_seed_demo_adds_nothing_and_prints_the_same_credentials(seeded, runner, app):
    before = {model: count(model) for model in (Recipient, Device, Preference, Template, StaffUser, ApiKey)}
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    assert "already loaded" in result.output
    assert {model: count(model) for model in before} == before
    credentials = read_credentials(app.instance_path)
    assert credentials.admin_password in result.output and credentials.api_key in result.output
    assert credentials.admin_password in seeded


def test_demo_credentials_are_private_and_work(seeded, app):
    path = credentials_path(app.instance_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    credentials = read_credentials(app.instance_path)
    admin = db.session.scalar(select(StaffUser).filter_by(email=ADMIN_EMAIL))
    marketer = db.session.scalar(select(StaffUser).filter_by(email=MARKETER_EMAIL))
    assert (admin.role, marketer.role) == ("admin", "marketer")
    assert admin.check_password(credentials.admin_password)
    assert marketer.check_password(credentials.marketer_password)
    assert not admin.check_password(credentials.marketer_password)
    assert find_active_key(credentials.api_key).name == "demo"


def test_demo_low_balance_rule_alerts_only_customers_below_their_threshold_inside_their_local_window(seeded):
    rule = db.session.scalar(select(Rule).filter_by(name=DEMO_RULE_NAME))
    assert (rule.enabled, rule.template_key, rule.channels) == (True, "low_balance", ["in_app", "email"])
    # 02:00 UTC: morning to evening from Kolkata to Kiritimati, night in the Americas and Europe.
    now = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    expected = dry_run(rule, now).total

    result = evaluate_rule(rule, now)

    assert result.claimed == result.sent == expected > 0
    notified = db.session.scalars(select(Recipient).join(Notification, Notification.recipient_id == Recipient.id)).all()
    assert len(notified) == expected
    for person in notified:
        assert person.attributes["balance"] < person.attributes["low_balance_threshold"]
        zones = [person.timezone] if person.timezone else country_zones()[person.attributes["country"]]
        assert all(9 <= now.astimezone(ZoneInfo(name)).hour < 19 for name in zones), (person.external_id, zones)
    assert evaluate_rule(rule, now).claimed == 0


def test_demo_team_topic_holds_the_inbox_links_user_and_a_send_reaches_its_members(seeded, app, run_jobs):
    from app.api.keys import create_api_key
    from app.topics import store

    team = store.find_topic("team")
    assert team is not None and store.subscriber_count(team.id) == 12
    key = create_api_key("demo-test")[1]
    response = app.test_client().post(
        "/v1/notifications",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "topic": "team",
            "exclude": ["demo-00002"],
            "type": "transactional",
            "title": "Stand-up in 5",
            "channels": ["in_app"],
        },
    )
    assert response.status_code == 202
    run_jobs()
    titled = db.session.scalars(
        select(Recipient.external_id)
        .join(Notification, Notification.recipient_id == Recipient.id)
        .where(Notification.title == "Stand-up in 5")
    ).all()
    assert len(titled) == 11 and "demo-00001" in titled and "demo-00002" not in titled


def test_the_demo_has_one_webhook_endpoint_on_heralds_own_request_log_hearing_every_event(seeded, app):
    from app.models import WebhookEndpoint
    from app.outbound_webhooks.events import ALL_EVENT_TYPES

    [endpoint] = db.session.scalars(select(WebhookEndpoint)).all()
    assert endpoint.url == f"{app.config['BASE_URL']}/console/webhooks/request-log"
    assert endpoint.enabled and endpoint.event_types == list(ALL_EVENT_TYPES) and endpoint.secret.startswith("whsec_")
