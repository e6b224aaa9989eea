"""Campaign fan-out against the real database, Redis, RQ and an SMTP server."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, time, timedelta

import pytest
from rq import Queue
from sqlalchemy import event, func, insert, select, update

from app.campaigns import progress, store, testsend
from app.campaigns.fanout import run_batch
from app.extensions import db
from app.models import (
    AuditEntry,
    Campaign,
    CampaignBatch,
    Delivery,
    DeliveryEvent,
    Notification,
    Preference,
    Recipient,
    StaffUser,
    Suppression,
)
from app.models.campaigns import BATCH_PENDING
from app.models.types import utcnow
from app.realtime.publish import user_channel
from app.redis_client import get_redis
from jobs.campaigns import plan_campaign
from tests.factories import make_recipient, make_staff, make_template

EVERYONE = {"all": []}


def seed(count: int, **fields) -> list[int]:
    """``count`` recipients inserted set-based (ids in order)."""
    now = utcnow()
    start = db.session.scalar(select(func.count()).select_from(Recipient))
    rows = [
        {
            "external_id": f"c{start + n}",
            "email": f"c{start + n}@example.com",
            "phone": None,
            "timezone": "Europe/Lisbon",
            "locale": "en",
            "attributes": {},
            "hard_stop": False,
            "created_at": now,
            "updated_at": now,
            **fields,
        }
        for n in range(count)
    ]
    db.session.execute(insert(Recipient), rows)
    db.session.commit()
    return db.session.scalars(select(Recipient.id).order_by(Recipient.id)).all()[-count:]


def campaign_fields(template_id: int, **overrides) -> store.CampaignFields:
    values = dict(
        name="Winter sale",
        template_id=template_id,
        audience_filter=EVERYONE,
        audience_name=None,
        channels=["in_app", "email"],
        schedule="now",
        send_at=None,
        local_time=None,
        throttle_per_minute=None,
        ends_at=None,
    )
    values.update(overrides)
    return store.CampaignFields(**values)


@pytest.fixture
def marketer(app):
    return make_staff(email="mia@example.com", role="marketer")


@pytest.fixture
def template(app):
    return make_template(
        "winter",
        type="marketing",
        category="promo",
        variants={
            "en": {
                "in_app": {"title": "Sale for {{ recipient.id }}", "body": "20% off"},
                "email": {"subject": "Sale", "html": "<p>20% off, {{ recipient.id }}</p>", "text": "20% off"},
            }
        },
    )


def mia() -> StaffUser:
    """The marketer, fetched again (a drained job queue ends the test's session)."""
    return db.session.scalar(select(StaffUser).where(StaffUser.email == "mia@example.com"))


def new_campaign(template, marketer, **overrides) -> Campaign:
    return store.create_campaign(campaign_fields(template.id, **overrides), marketer)


def counters(campaign_id: int) -> dict[str, int]:
    return progress.parse(get_redis().hgetall(progress.progress_key(campaign_id)))[1]


def test_launch_fans_out_one_notification_and_one_send_per_recipient_and_channel(
    app, smtp_server, run_jobs, template, marketer
):
    seed(30)
    campaign = new_campaign(template, marketer)
    cid = campaign.id
    assert store.launch(campaign, marketer) == []
    run_jobs()

    assert (
        db.session.scalar(select(func.count()).select_from(Notification).where(Notification.campaign_id == cid)) == 30
    )
    inbox = db.session.scalars(select(Notification).where(Notification.campaign_id == cid)).all()
    assert all(
        n.inbox_at is not None and n.title == f"Sale for {db.session.get(Recipient, n.recipient_id).external_id}"
        for n in inbox
    )
    assert {n.template_version for n in inbox} == {1}
    assert len(smtp_server.messages) == 30
    assert dict(
        db.session.execute(
            select(Delivery.channel, func.count())
            .where(Delivery.status.in_(("DELIVERED", "DISPATCHED")))
            .group_by(Delivery.channel)
        ).all()
    ) == {"in_app": 30, "email": 30}
    campaign = db.session.get(Campaign, cid)
    assert campaign.status == "finished" and campaign.planned == 30
    assert counters(cid) == {"planned": 30, "notified": 30, "sent:in_app": 30, "sent:email": 30}
    assert smtp_server.messages[0]["List-Unsubscribe"]  # marketing mail keeps its one-click unsubscribe


def test_rerunning_a_finished_batch_inserts_and_sends_nothing_twice(app, smtp_server, run_jobs, template, marketer):
    seed(12)
    campaign = new_campaign(template, marketer)
    cid = campaign.id
    store.launch(campaign, marketer)
    run_jobs()
    batch = db.session.scalar(select(CampaignBatch))
    # As if the worker died after sending, before closing the batch (so the campaign never finished).
    db.session.execute(update(CampaignBatch).values(status=BATCH_PENDING))
    db.session.execute(update(Campaign).values(status="running", finished_at=None))
    db.session.commit()

    assert run_batch(cid, batch.id) == "done"

    assert db.session.scalar(select(func.count()).select_from(Notification)) == 12
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 24
    assert len(smtp_server.messages) == 12
    assert counters(cid)["sent:email"] == 12


def test_batch_loads_routing_facts_set_based_in_a_handful_of_queries(app, smtp_server, template, marketer):
    ids = seed(1000)
    campaign = new_campaign(template, marketer, channels=["in_app"])
    cid = campaign.id
    store.launch(campaign, marketer)
    plan_campaign(cid)
    batch = db.session.scalar(select(CampaignBatch))
    assert (batch.first_id, batch.last_id, batch.size) == (ids[0], ids[-1], 1000)
    statements = []

    def count(*_args):
        statements.append(1)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert run_batch(cid, batch.id) == "done"
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert (
        db.session.scalar(select(func.count()).select_from(Notification).where(Notification.inbox_at.is_not(None)))
        == 1000
    )
    assert len(statements) < 25, f"{len(statements)} statements for one batch: facts must be loaded set-based"


def test_routing_reasons_are_recorded_and_counted(app, smtp_server, run_jobs, template, marketer):
    stopped, bounced, opted_out, fine = seed(4)
    db.session.execute(update(Recipient).where(Recipient.id == stopped).values(hard_stop=True))
    bounced_email = db.session.get(Recipient, bounced).email
    db.session.add(Suppression(channel="email", address=bounced_email, reason="hard bounce"))
    db.session.add(Preference(recipient_id=opted_out, channel="email", category="marketing", enabled=False))
    db.session.commit()
    campaign = new_campaign(template, marketer)
    cid = campaign.id
    store.launch(campaign, marketer)
    run_jobs()

    reasons = dict(
        db.session.execute(
            select(Delivery.reason, func.count()).where(Delivery.status == "SUPPRESSED").group_by(Delivery.reason)
        ).all()
    )
    assert reasons == {"hard_stop": 2, "suppressed_address": 1, "opted_out": 1}
    assert len(smtp_server.messages) == 1
    assert counters(cid) == {
        "planned": 4,
        "notified": 4,
        "sent:in_app": 3,
        "sent:email": 1,
        "suppressed:hard_stop": 2,
        "suppressed:suppressed_address": 1,
        "suppressed:opted_out": 1,
    }
    events = db.session.scalars(select(DeliveryEvent.detail).where(DeliveryEvent.status == "SUPPRESSED")).all()
    assert sorted(events) == ["hard_stop", "hard_stop", "opted_out", "suppressed_address"]
    view = store.campaign_progress(db.session.get(Campaign, cid))
    assert (view.sent, view.suppressed, view.failed) == (4, 4, 0)


def test_paused_campaign_sends_nothing_until_resumed_and_then_each_recipient_once(
    app, smtp_server, run_jobs, template, marketer
):
    seed(2500)
    campaign = new_campaign(template, marketer, channels=["in_app"])
    cid = campaign.id
    store.launch(campaign, marketer)
    plan_campaign(cid)
    first = db.session.scalar(select(CampaignBatch).order_by(CampaignBatch.seq))
    assert run_batch(cid, first.id) == "done"
    store.pause(campaign, marketer)
    run_jobs()  # the queued batches see the pause and stop

    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1000
    assert (
        db.session.scalar(select(func.count()).select_from(CampaignBatch).where(CampaignBatch.status == "pending")) == 2
    )

    store.resume(db.session.get(Campaign, cid), mia())
    run_jobs()
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 2500
    assert db.session.scalar(select(func.count(func.distinct(Notification.recipient_id)))) == 2500
    statuses = dict(db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    assert (statuses, counters(cid)["sent:in_app"]) == ({"DELIVERED": 2500}, 2500), (statuses, counters(cid))
    assert db.session.get(Campaign, cid).status == "finished"
    actions = db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["campaign.create", "campaign.launch", "campaign.pause", "campaign.resume"]


def test_pause_between_channels_keeps_the_rest_pending_and_resume_sends_it_once(
    app, smtp_server, run_jobs, template, marketer, monkeypatch
):
    seed(5)
    campaign = new_campaign(template, marketer)
    cid = campaign.id
    store.launch(campaign, marketer)
    plan_campaign(cid)
    batch = db.session.scalar(select(CampaignBatch))
    from app.pipeline import deliver as pipeline

    real = pipeline.send_in_app

    def in_app_then_pause(*args):
        sent = real(*args)
        db.session.execute(update(Campaign).where(Campaign.id == cid).values(status="paused"))
        db.session.commit()
        return sent

    monkeypatch.setattr(pipeline, "send_in_app", in_app_then_pause)
    assert run_batch(cid, batch.id) == "paused"
    monkeypatch.setattr(pipeline, "send_in_app", real)
    assert smtp_server.messages == []
    assert db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "PENDING")) == 5

    store.resume(db.session.get(Campaign, cid), mia())
    run_jobs()
    assert len(smtp_server.messages) == 5
    assert (
        db.session.scalar(select(func.count()).select_from(Notification).where(Notification.inbox_at.is_not(None))) == 5
    )
    assert counters(cid)["sent:in_app"] == 5


def test_cancel_stops_everything_not_yet_sent(app, smtp_server, run_jobs, template, marketer):
    seed(1500)
    campaign = new_campaign(template, marketer)
    cid = campaign.id
    store.launch(campaign, marketer)
    plan_campaign(cid)
    first = db.session.scalar(select(CampaignBatch).order_by(CampaignBatch.seq))
    run_batch(cid, first.id)
    store.cancel(db.session.get(Campaign, cid), mia())
    run_jobs()

    assert len(smtp_server.messages) == 1000
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1000
    assert (
        db.session.scalar(select(func.count()).select_from(CampaignBatch).where(CampaignBatch.status == "cancelled"))
        == 1
    )
    with pytest.raises(store.CampaignStateError, match="cancelled"):
        store.resume(db.session.get(Campaign, cid), mia())


def test_nothing_is_sent_after_the_end_time(app, smtp_server, run_jobs, template, marketer):
    seed(3)
    campaign = new_campaign(template, marketer, ends_at=utcnow() + timedelta(minutes=5))
    cid = campaign.id
    store.launch(campaign, marketer)
    plan_campaign(cid)
    db.session.execute(
        update(Campaign).values(ends_at=utcnow() - timedelta(seconds=1))
    )  # the end passes before it runs
    db.session.commit()
    run_jobs()

    assert smtp_server.messages == []
    statuses = dict(
        db.session.execute(
            select(Delivery.reason, func.count()).where(Delivery.status == "SUPPRESSED").group_by(Delivery.reason)
        ).all()
    )
    assert statuses == {"campaign_ended": 6}
    assert (
        db.session.scalar(select(func.count()).select_from(Notification).where(Notification.inbox_at.is_not(None))) == 0
    )
    assert counters(cid)["suppressed:campaign_ended"] == 6


def test_local_time_schedule_plans_one_wave_per_zone_at_its_local_time(app, template, marketer):
    for zone in ("Asia/Tokyo", "America/New_York", None):
        seed(2, timezone=zone)
    campaign = new_campaign(template, marketer, schedule="local", local_time=time(9, 0), channels=["in_app"])
    cid = campaign.id
    launched = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)  # Tokyo 21:00 (passed), New York 07:00, UTC 12:00 (passed)
    store.launch(campaign, marketer, now=launched)
    from app.campaigns.batches import plan_batches

    rows = plan_batches(db.session.get(Campaign, cid), launched)
    waves = {row["zone"]: row["run_at"] for row in rows}
    assert waves == {
        "America/New_York": datetime(2026, 3, 7, 14, 0, tzinfo=UTC),  # 09:00 EST today
        "Asia/Tokyo": datetime(2026, 3, 8, 0, 0, tzinfo=UTC),  # 09:00 JST tomorrow
        None: datetime(2026, 3, 8, 9, 0, tzinfo=UTC),  # no zone: 09:00 UTC tomorrow
    }
    assert all(row["by_zone"] and row["size"] == 2 for row in rows)


def test_future_waves_wait_in_the_scheduled_registry_not_the_queue(app, template, marketer):
    seed(3)
    campaign = new_campaign(
        template, marketer, schedule="at", send_at=utcnow() + timedelta(hours=2), channels=["in_app"]
    )
    cid = campaign.id
    store.launch(campaign, marketer)
    plan_campaign(cid)
    low = Queue("low", connection=get_redis())
    assert low.count == 0 and low.scheduled_job_registry.count == 1


def test_throttle_spaces_batches_to_stay_under_the_limit_per_minute(app, template, marketer):
    seed(2500)
    campaign = new_campaign(template, marketer, throttle_per_minute=1000, channels=["in_app"])
    cid = campaign.id
    store.launch(campaign, marketer)
    plan_campaign(cid)
    batches = db.session.scalars(select(CampaignBatch).order_by(CampaignBatch.seq)).all()
    assert [b.size for b in batches] == [1000, 1000, 500]
    gaps = [(b.run_at - batches[0].run_at).total_seconds() for b in batches]
    assert gaps == [0, 60, 120]
    low = Queue("low", connection=get_redis())
    assert low.count == 1 and low.scheduled_job_registry.count == 2


def test_launch_refuses_and_says_why(app, template, marketer):
    campaign = new_campaign(template, marketer, channels=["in_app", "sms"], ends_at=utcnow() - timedelta(minutes=1))
    cid = campaign.id
    problems = store.launch(campaign, marketer)
    assert problems == [
        "The audience is empty: no recipient matches its filter.",
        "The template has no sms variant in its default locale (en).",
        "The end time is in the past.",
    ]
    assert db.session.get(Campaign, cid).status == "draft"
    assert Queue("normal", connection=get_redis()).count == 0


def test_launch_pins_the_template_version_current_at_launch(app, run_jobs, template, marketer):
    seed(1)
    campaign = new_campaign(template, marketer, channels=["in_app"])
    from app.models import TemplateVersion

    template.versions.append(TemplateVersion(version=2, variants={"en": {"in_app": {"title": "v2", "body": "new"}}}))
    template.current_version = 2
    db.session.commit()
    store.launch(campaign, marketer)
    template.versions.append(TemplateVersion(version=3, variants={"en": {"in_app": {"title": "v3", "body": "newer"}}}))
    template.current_version = 3
    db.session.commit()
    run_jobs()
    notification = db.session.scalar(select(Notification))
    assert (notification.template_version, notification.title) == (2, "v2")


def test_test_send_goes_through_the_normal_pipeline_marked_as_test(app, run_jobs, template, marketer):
    make_recipient(external_id="qa-1")
    campaign = new_campaign(template, marketer, channels=["in_app"])
    cid = campaign.id
    results = testsend.test_send(campaign, ["qa-1", "nobody"], marketer)
    assert [(r.user_id, r.error) for r in results] == [("qa-1", None), ("nobody", "no recipient has this user id")]
    run_jobs()
    notification = db.session.get(Notification, results[0].notification_id)
    assert notification.campaign_id is None and notification.data == {"campaign_id": cid, "campaign_test": True}
    assert notification.inbox_at is not None and notification.routed_at is not None
    assert db.session.get(Campaign, cid).status == "draft"


def test_in_app_sends_publish_one_realtime_event_per_recipient(app, run_jobs, template, marketer):
    [recipient_id] = seed(1)
    pubsub = get_redis().pubsub()
    pubsub.subscribe(user_channel(recipient_id))
    pubsub.get_message(timeout=1)
    campaign = new_campaign(template, marketer, channels=["in_app"])
    store.launch(campaign, marketer)
    run_jobs()
    message = pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    pubsub.close()
    payload = json.loads(message["data"])
    assert payload["type"] == "notification" and payload["data"]["title"].startswith("Sale for ")


def test_counters_are_rebuilt_from_the_database_when_redis_lost_them(app, smtp_server, run_jobs, template, marketer):
    seed(7)
    campaign = new_campaign(template, marketer)
    cid = campaign.id
    store.launch(campaign, marketer)
    run_jobs()
    get_redis().delete(progress.progress_key(cid))
    view = store.campaign_progress(db.session.get(Campaign, cid))
    assert (view.planned, view.sent, view.sent_by_channel) == (7, 14, {"email": 7, "in_app": 7})


def test_progress_stream_sends_current_counts_and_ends_when_the_campaign_finishes(
    app, client, run_jobs, template, marketer
):
    seed(4)
    campaign = new_campaign(template, marketer, channels=["in_app"])
    cid = campaign.id
    store.launch(campaign, marketer)
    run_jobs()
    client.post("/console/login", data={"email": "mia@example.com", "password": "correct horse battery"})
    response = client.get(f"/console/campaigns/{cid}/events")
    assert response.mimetype == "text/event-stream"
    body = response.get_data(as_text=True)  # finite: the campaign is finished
    blocks = [block.splitlines() for block in body.split("\n\n") if block.strip()]
    names = [lines[0] for lines in blocks if lines[0].startswith("event: ")]
    assert names == ["event: progress", "event: done"]
    progress_event = json.loads(blocks[1][1][len("data: ") :])
    assert progress_event["status"] == "finished" and progress_event["sent"] == 4 and progress_event["percent"] == 100


def test_progress_stream_needs_a_signed_in_staff_member(app, client, template, marketer):
    campaign = new_campaign(template, marketer)
    cid = campaign.id
    response = client.get(f"/console/campaigns/{cid}/events")
    assert response.status_code in (302, 401)
    assert response.mimetype != "text/event-stream"


def test_two_launch_clicks_plan_the_campaign_once(app, template, marketer):
    seed(3)
    campaign = new_campaign(template, marketer, channels=["in_app"])
    cid = campaign.id
    outcomes = []

    def click():
        with app.app_context():
            try:
                outcomes.append(store.launch(db.session.get(Campaign, cid), mia()) or "launched")
            except store.CampaignStateError as error:
                outcomes.append(str(error))
            db.session.remove()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcomes.count("launched") == 1
    assert Queue("normal", connection=get_redis()).count == 1
