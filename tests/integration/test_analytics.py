"""Analytics numbers against known seeded data (both databases), the analytics page, and /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as clock

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from sqlalchemy import select

from app import analytics
from app.analytics import Period, PeriodError, bar_chart, hour_slots, interpolate, resolve_period
from app.campaigns import store
from app.extensions import db
from app.models import Delivery, Notification, Rule
from app.models.types import utcnow
from app.redis_client import get_redis
from app.rules.evaluate import evaluate_rule
from tests.factories import make_notification, make_recipient, make_staff, make_template

PASSWORD = "correct horse battery"


def seed(now: datetime) -> dict[str, Notification]:
    """Six notifications with known outcomes; see each test for the numbers they must give."""
    ana = make_recipient(external_id="ana")

    def note(name, created, priority="normal", routed=True, read=False, clicked=False, category="general"):
        notification = make_notification(ana, priority=priority, category=category, title=name)
        notification.created_at = created
        notification.routed_at = created + timedelta(milliseconds=50) if routed else None
        notification.status = "routed" if routed else "accepted"
        notification.read_at = created + timedelta(minutes=5) if read else None
        notification.clicked_at = created + timedelta(minutes=6) if clicked else None
        return notification

    def delivery(notification, channel, status, after_seconds=None, error_code=None):
        at = notification.created_at + timedelta(seconds=after_seconds) if after_seconds is not None else None
        db.session.add(
            Delivery(
                notification_id=notification.id,
                channel=channel,
                status=status,
                error_code=error_code,
                dispatched_at=at,
                delivered_at=at if status == "DELIVERED" else None,
                dead_lettered_at=utcnow() if status == "FAILED" else None,
            )
        )

    notes = {
        "n1": note("n1", now - timedelta(hours=2), read=True, clicked=True, category="promo"),
        "n2": note("n2", now - timedelta(hours=3)),
        "n3": note("n3", now - timedelta(hours=1), priority="high"),
        "n4": note("n4", now - timedelta(hours=1, minutes=30)),
        "n5": note("n5", now - timedelta(days=10), clicked=True),
        "n6": note("n6", now - timedelta(minutes=30), routed=False),
    }
    delivery(notes["n1"], "in_app", "DELIVERED", 2)
    delivery(notes["n1"], "email", "DISPATCHED", 3)
    delivery(notes["n2"], "in_app", "DELIVERED", 4)
    delivery(notes["n3"], "in_app", "DELIVERED", 1)
    delivery(notes["n3"], "email", "FAILED", error_code="smtp_550")
    delivery(notes["n4"], "sms", "SUPPRESSED")
    delivery(notes["n4"], "email", "FAILED", error_code="smtp_connection")
    delivery(notes["n5"], "in_app", "DELIVERED", 10)
    db.session.commit()
    return notes


@pytest.fixture
def now():
    return utcnow()


def day(now):
    return resolve_period("24h", now=now)


# --- the numbers ------------------------------------------------------------------------------------


def test_funnel_counts_each_stage_of_the_periods_notifications(app, now):
    seed(now)
    assert analytics.funnel(day(now)) == {
        "accepted": 5,
        "routed": 4,
        "suppressed": 1,
        "dispatched": 4,
        "delivered": 3,
        "read": 1,
        "clicked": 1,
    }
    assert analytics.funnel(resolve_period("30d", now=now))["accepted"] == 6


def test_channel_rates_count_sent_over_attempted(app, now):
    seed(now)
    rates = {r.channel: r for r in analytics.channel_rates(day(now))}
    assert list(rates) == ["in_app", "email", "sms"]
    assert (rates["in_app"].total, rates["in_app"].sent, rates["in_app"].rate) == (3, 3, 1.0)
    assert (rates["email"].total, rates["email"].sent, rates["email"].failed) == (3, 1, 2)
    assert rates["email"].rate == pytest.approx(1 / 3)
    assert (rates["sms"].suppressed, rates["sms"].rate) == (1, None)


def test_failures_are_broken_down_by_channel_and_error_code(app, now):
    seed(now)
    assert sorted(analytics.failure_breakdown(day(now))) == [("email", "smtp_550", 1), ("email", "smtp_connection", 1)]


def test_latency_percentiles_interpolate_like_percentile_cont(app, now):
    seed(now)
    latency = {row.priority: row for row in analytics.latency_percentiles(day(now))}
    assert list(latency) == ["high", "normal"]
    assert latency["normal"].count == 2
    assert latency["normal"].seconds == pytest.approx({0.5: 3.0, 0.9: 3.8, 0.99: 3.98}, abs=1e-3)
    assert latency["high"].seconds == pytest.approx({0.5: 1.0, 0.9: 1.0, 0.99: 1.0}, abs=1e-3)
    month = {row.priority: row for row in analytics.latency_percentiles(resolve_period("30d", now=now))}
    assert month["normal"].seconds == pytest.approx({0.5: 4.0, 0.9: 8.8, 0.99: 9.88}, abs=1e-3)


def test_sends_per_hour_fills_every_hour_and_counts_dispatches(app, now):
    notes = seed(now)
    sends = analytics.sends_per_hour(day(now))
    assert len(sends) in (24, 25)
    assert sum(count for _, count in sends) == 4
    slot_of_n1 = (notes["n1"].created_at + timedelta(seconds=2)).replace(minute=0, second=0, microsecond=0)
    counts = dict(sends)
    assert counts[slot_of_n1] >= 2  # n1's in-app and email went out in that hour


def test_campaign_filter_narrows_every_number(app, now):
    from app.models import Campaign

    notes = seed(now)
    campaign = Campaign(
        name="promo",
        template_id=make_template().id,
        channels=["in_app", "email"],
        audience_filter={"all": []},
        schedule="now",
        status="finished",
        planned=1,
    )
    db.session.add(campaign)
    db.session.flush()
    notes["n1"].campaign_id = campaign.id
    db.session.commit()
    report = analytics.report(day(now), analytics.coerce_campaign(str(campaign.id)))
    assert report.funnel == {
        "accepted": 1,
        "routed": 1,
        "suppressed": 0,
        "dispatched": 2,
        "delivered": 1,
        "read": 1,
        "clicked": 1,
    }
    assert [(r.channel, r.total) for r in report.channels] == [("in_app", 1), ("email", 1)]
    assert report.failures == [] and sum(n for _, n in report.sends) == 2
    assert [row.count for row in report.latency] == [1]


def test_a_malformed_campaign_id_is_a_period_error():
    with pytest.raises(PeriodError):
        analytics.coerce_campaign("seven")
    assert analytics.coerce_campaign(" ") is None


# --- pure parts ---------------------------------------------------------------------------------------


def test_resolve_period_presets_and_custom_whole_days():
    now = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
    assert resolve_period("7d", now=now).start == now - timedelta(days=7)
    assert resolve_period("bogus", now=now).key == "24h"
    custom = resolve_period("custom", "2026-03-01", "2026-03-02", now=now)
    assert (custom.start, custom.end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))


@pytest.mark.parametrize(
    "start,end,message",
    [
        ("2026-03-02", "2026-03-01", "before"),
        ("x", "2026-03-01", "YYYY-MM-DD"),
        ("2026-01-01", "2026-06-01", "at most"),
    ],
)
def test_resolve_period_rejects_bad_custom_ranges(start, end, message):
    with pytest.raises(PeriodError, match=message):
        resolve_period("custom", start, end)


def test_interpolate_matches_percentile_cont_between_neighbours():
    assert interpolate(2.0, 4.0, 0.9) == pytest.approx(3.8)
    assert interpolate(5.0, None, 0.5) == 5.0


def test_hour_slots_cover_a_partial_first_hour():
    start = datetime(2026, 3, 10, 10, 37, tzinfo=UTC)
    slots = hour_slots(Period("x", "x", start, start + timedelta(hours=2)))
    assert [s.hour for s in slots] == [10, 11, 12]


def test_bar_chart_scales_bars_to_the_peak_and_labels_ticks():
    t0 = datetime(2026, 3, 10, 0, tzinfo=UTC)
    chart = bar_chart([(t0 + timedelta(hours=n), v) for n, v in enumerate([0, 5, 10, 5])], width=400, height=100)
    assert chart.peak == 10
    heights = [bar.height for bar in chart.bars]
    assert heights[0] == 0 and heights[2] == 96 and heights[1] == heights[3] == 48
    assert all(bar.y + bar.height == 100 for bar in chart.bars)
    assert [bar.x for bar in chart.bars] == [0, 100, 200, 300]
    assert chart.ticks[0] == (0, "00:00") and "2026-03-10 02:00 UTC: 10" == chart.bars[2].title
    assert bar_chart([]).bars == [] and bar_chart([(t0, 0)]).bars[0].height == 0


# --- the page -----------------------------------------------------------------------------------------


def sign_in(client, role):
    make_staff(email=f"{role}@example.com", password=PASSWORD, role=role)
    client.post("/console/login", data={"email": f"{role}@example.com", "password": PASSWORD})


@pytest.mark.parametrize("role", ["admin", "marketer"])
def test_analytics_page_shows_the_numbers_and_an_svg_chart(client, now, role):
    seed(now)
    sign_in(client, role)
    html = client.get("/console/analytics?period=24h").get_data(as_text=True)
    assert 'data-testid="funnel-accepted">5<' in html and 'data-testid="funnel-read">1<' in html
    assert 'data-testid="rate-email">33.3%<' in html
    assert 'data-testid="failures-email-smtp_550">1<' in html
    assert 'data-testid="latency-normal-p50">3.0 s<' in html
    assert "<svg" in html and 'class="chart__bar"' in html and "<script" not in html.split("<body>")[1]


def test_analytics_page_explains_a_bad_custom_period_instead_of_failing(client):
    sign_in(client, "marketer")
    response = client.get("/console/analytics?period=custom&start=2026-05-02&end=2026-05-01")
    assert response.status_code == 400
    assert 'data-testid="period-error"' in response.get_data(as_text=True)


def test_analytics_page_needs_a_sign_in(client):
    response = client.get("/console/analytics")
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]


# --- /metrics ------------------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_are_prometheus_text_with_counts_from_the_database_and_redis(client, now):
    seed(now)
    make_notification(make_recipient(), type="marketing")
    Queue("low", connection=get_redis()).enqueue("builtins.len", [1])
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    values = samples(response.get_data(as_text=True))
    assert values[("herald_notifications", (("type", "transactional"),))] == 6
    assert values[("herald_notifications", (("type", "marketing"),))] == 1
    assert values[("herald_deliveries", (("channel", "email"), ("status", "FAILED")))] == 2
    assert values[("herald_deliveries", (("channel", "in_app"), ("status", "DELIVERED")))] == 4
    assert values[("herald_dead_letters", ())] == 2
    assert values[("herald_queue_jobs", (("queue", "low"), ("state", "queued")))] == 1
    assert values[("herald_redis_up", ())] == 1


def test_metrics_token_requires_the_bearer(app, client):
    app.config["METRICS_TOKEN"] = "s3cret-token"
    try:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    finally:
        app.config["METRICS_TOKEN"] = None


def test_metrics_token_is_read_from_the_environment():
    from app.config import from_environment

    assert from_environment({"HERALD_METRICS_TOKEN": "abc", "SECRET_KEY": "x" * 32})["METRICS_TOKEN"] == "abc"
    assert from_environment({"SECRET_KEY": "x" * 32})["METRICS_TOKEN"] is None


# --- in-app latency from real deliveries --------------------------------------------------------------


def delivered_in_app_seconds() -> list[float]:
    rows = db.session.execute(
        select(Notification.created_at, Delivery.delivered_at)
        .join(Delivery, Delivery.notification_id == Notification.id)
        .where(Delivery.channel == "in_app", Delivery.status == "DELIVERED")
    ).all()
    return sorted((delivered - created).total_seconds() for created, delivered in rows)


def test_in_app_latency_is_the_real_time_from_accept_to_the_inbox_row_for_api_notifications(app, api, run_jobs):
    for n in range(3):
        make_recipient(external_id=f"lat-{n}")
    for n in range(3):
        response = api.post(
            "/v1/notifications",
            json={
                "user_id": f"lat-{n}",
                "type": "transactional",
                "category": "general",
                "title": "t",
                "body": "b",
                "channels": ["in_app"],
            },
        )
        assert response.status_code == 202
    run_jobs()

    measured = delivered_in_app_seconds()
    assert len(measured) == 3 and min(measured) > 0
    [row] = analytics.latency_percentiles(day(utcnow()))
    assert row.priority == "normal" and row.count == 3
    assert row.seconds[0.5] == pytest.approx(measured[1], abs=2e-3)  # SQLite's julianday keeps milliseconds
    assert row.seconds[0.99] > 0


def test_in_app_latency_of_a_campaign_counts_from_the_notifications_creation(app, run_jobs):
    staff = make_staff()
    template = make_template(
        "latency",
        type="marketing",
        category="promo",
        variants={"en": {"in_app": {"title": "Hi {{ recipient.id }}", "body": "Sale"}}},
    )
    for n in range(4):
        make_recipient(external_id=f"lat-{n}")
    campaign = store.create_campaign(
        store.CampaignFields(
            name="Latency",
            template_id=template.id,
            audience_filter={"all": []},
            audience_name=None,
            channels=["in_app"],
            schedule="now",
            send_at=None,
            local_time=None,
            throttle_per_minute=None,
            ends_at=None,
        ),
        staff,
    )
    assert store.launch(campaign, staff) == []
    run_jobs()

    measured = delivered_in_app_seconds()
    assert len(measured) == 4 and min(measured) > 0
    [row] = analytics.latency_percentiles(day(utcnow()))
    assert row.count == 4 and row.seconds[0.5] > 0


def test_in_app_latency_of_a_daily_rule_is_not_zero(app):
    make_template("low", category="low_balance", variants={"en": {"in_app": {"title": "Low", "body": "Top up"}}})
    make_recipient(external_id="low-1", timezone="UTC", attributes={"balance": 1, "low_balance_threshold": 5})
    rule = Rule(
        name="Low",
        audience={"all": []},
        type="transactional",
        category="low_balance",
        priority="normal",
        template_key="low",
        channels=["in_app"],
        window_start=clock(0),
        window_end=clock(23, 59),
        every_days=1,
        no_timezone_policy="utc",
        enabled=True,
    )
    db.session.add(rule)
    db.session.commit()
    assert evaluate_rule(rule, utcnow()).sent == 1
    assert min(delivered_in_app_seconds()) > 0
