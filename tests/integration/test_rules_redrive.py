"""A rule's external deliveries never leave the rule's own path: quiet-hours deferrals, the reaper's re-drive
and the marketing cap all go through the rule's window check and routing."""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Delivery, Device, Notification, Recipient, Rule, RuleSend
from app.models.rules import SUPPRESSED as CLAIM_SUPPRESSED
from app.models.types import utcnow
from app.pipeline.deliver import deliver
from app.redis_client import get_redis, key
from app.rules import send as rule_send
from app.rules.evaluate import evaluate_rule
from app.tasks import get_queue
from jobs.maintenance import redrive_stuck_work
from tests.integration.test_rules import at, low, make_rule, notified


def queued_calls(priority: str = "normal") -> list[tuple[str, tuple]]:
    queue = get_queue(priority)
    jobs = queue.jobs + [queue.fetch_job(job_id) for job_id in queue.scheduled_job_registry.get_job_ids()]
    return [(job.func_name.rsplit(".", 1)[-1], job.args) for job in jobs]


def with_phone(person, token: str):
    db.session.add(Device(recipient_id=person.id, platform="android", token=token))
    db.session.commit()
    return person


def test_a_push_deferred_past_quiet_hours_waits_in_a_pipeline_job_for_its_time(app):
    rule = make_rule(channels=["in_app", "push"])
    with_phone(low("Europe/Lisbon", quiet_start=time(8), quiet_end=time(10)), "tok-q")
    evaluate_rule(rule, at("Europe/Lisbon", 2027, 6, 15, 9))
    push = db.session.scalar(select(Delivery).where(Delivery.channel == "push"))
    assert push.not_before == at("Europe/Lisbon", 2027, 6, 15, 10)
    calls = queued_calls()
    # Released through the pipeline's job, which re-checks the rule's window by the notification's origin.
    assert ("deliver", ([push.id],)) in calls
    assert db.session.get(Notification, push.notification_id).origin == f"rule:{rule.id}"


def test_a_crash_between_the_batch_commit_and_the_push_hand_over_loses_nothing_and_repeats_nothing(
    app, monkeypatch, recorded_push
):
    """In-app landed with the batch's commit; the push it never handed over is found by the reaper and sent once."""
    rule = make_rule(channels=["in_app", "push"])
    person_id = with_phone(low("Europe/Lisbon"), "tok-c").id
    nine = at("Europe/Lisbon", 2026, 6, 15, 9)

    def crash(*args):
        raise SystemExit("killed after the commit, before the hand-over")

    with monkeypatch.context() as patched, pytest.raises(SystemExit):
        patched.setattr(rule_send, "_hand_over", crash)
        evaluate_rule(rule, nine)
    db.session.rollback()
    in_app, push = (
        db.session.scalar(select(Delivery).where(Delivery.channel == channel)) for channel in ("in_app", "push")
    )
    assert (in_app.status, in_app.attempts, push.status) == ("DELIVERED", 1, "PENDING")
    assert db.session.get(Notification, in_app.notification_id).inbox_at == in_app.delivered_at
    assert db.session.scalar(select(RuleSend.status)) == "sent"
    assert queued_calls() == []
    rule_id, push_id, key = rule.id, push.id, f"herald-{push.notification_id}-push"

    assert evaluate_rule(db.session.get(Rule, rule_id), nine + timedelta(minutes=5)).sent == 0  # nothing re-sent
    later = nine + timedelta(minutes=15)  # the reaper's STALE_AFTER (10 min) is over, still inside the window
    assert redrive_stuck_work(later, lease_seconds=60)["deliveries"] == 1
    assert queued_calls() == [("deliver", ([push_id],))]
    assert deliver([push_id], later).counts["sent:push"] == 1
    assert [m.idempotency_key for m in recorded_push] == [key]
    assert notified(db.session.get(Recipient, person_id)) == 1


def test_reaper_hands_a_stuck_rule_delivery_to_the_pipeline_and_it_is_not_sent_outside_the_window(app, recorded_push):
    rule = make_rule(channels=["push"])
    with_phone(low("Europe/Lisbon"), "tok-r")
    nine = at("Europe/Lisbon", 2026, 6, 15, 9)
    evaluate_rule(rule, nine)
    push = db.session.scalar(select(Delivery).where(Delivery.channel == "push"))
    # A worker claimed it and died: SENDING, lease long gone.
    push.status, push.claimed_at, push.attempts = "SENDING", nine, 1
    db.session.commit()
    rule_id, push_id = rule.id, push.id
    get_redis().flushdb()

    assert redrive_stuck_work(utcnow(), lease_seconds=60)["deliveries"] == 1  # (it ends the session)
    assert queued_calls() == [("deliver", ([push_id],))]
    rule, push = db.session.get(Rule, rule_id), db.session.get(Delivery, push_id)

    # The re-drive runs at 21:00 Lisbon: too late, suppressed, the provider never called.
    assert deliver([push.id], at("Europe/Lisbon", 2026, 6, 15, 21)).counts["suppressed:outside_send_window"] == 1
    db.session.refresh(push)
    assert (push.status, push.reason) == ("SUPPRESSED", "outside_send_window") and recorded_push == []


def test_reaper_redrive_inside_the_window_sends_once_with_the_same_key(app, recorded_push):
    rule = make_rule(channels=["push"])
    with_phone(low("Europe/Lisbon"), "tok-s")
    nine = at("Europe/Lisbon", 2026, 6, 15, 9)
    evaluate_rule(rule, nine)
    push = db.session.scalar(select(Delivery).where(Delivery.channel == "push"))
    push.status, push.claimed_at, push.attempts = "SENDING", nine, 1
    db.session.commit()
    later = nine + timedelta(minutes=20)  # lease (10 min) over, still inside the window
    assert deliver([push.id], later).counts["sent:push"] == 1
    assert deliver([push.id], later).counts["sent:push"] == 0
    assert [m.idempotency_key for m in recorded_push] == [f"herald-{push.notification_id}-push"]


def test_a_failed_push_retries_through_the_pipeline_job(app, monkeypatch):
    from app.channels import Outcome, Result, base
    from app.channels.push import MobilePush

    class FailingPush(MobilePush):
        asynchronous = False  # a plain send, through the pipeline's thread pool

        def __init__(self, app_config):
            base.Channel.__init__(self, app_config)  # no APNs/FCM clients

        def send(self, message):
            return Result(Outcome.TRANSIENT, "fake", error_code="http_503", detail="try later")

    monkeypatch.setitem(base._REGISTRY, "push", FailingPush)
    monkeypatch.setattr(base, "_INSTANCES", {})
    rule = make_rule(channels=["push"])
    with_phone(low("Europe/Lisbon"), "tok-f")
    nine = at("Europe/Lisbon", 2026, 6, 15, 9)
    evaluate_rule(rule, nine)
    push_id = db.session.scalar(select(Delivery.id).where(Delivery.channel == "push"))
    get_redis().flushdb()
    assert deliver([push_id], nine).counts["failed"] == 0
    push = db.session.get(Delivery, push_id)
    assert (push.status, push.attempts) == ("PENDING", 1) and push.not_before is not None
    # The backoff retry is the pipeline's job (the rule's window re-checked by origin when it runs).
    assert queued_calls() == [("deliver", ([push_id],))]


@pytest.mark.parametrize("already_sent, expected", [(2, "sent"), (3, CLAIM_SUPPRESSED)])
def test_marketing_rules_obey_the_hourly_marketing_cap_and_count_toward_it(app, already_sent, expected):
    rule = make_rule(type="marketing", category="offers", channels=["in_app"])
    person = low("Europe/Lisbon")
    nine = at("Europe/Lisbon", 2026, 6, 15, 9)
    cap_key = key("cap", person.id)
    get_redis().zadd(
        cap_key, {f"earlier-{n}": (nine - timedelta(minutes=10 + n)).timestamp() for n in range(already_sent)}
    )
    evaluate_rule(rule, nine)
    claim = db.session.scalar(select(RuleSend))
    assert claim.status == expected
    if expected == CLAIM_SUPPRESSED:
        assert claim.reason == "frequency_cap"
        assert db.session.scalar(select(Notification.id)) is None
    else:
        assert get_redis().zcard(cap_key) == already_sent + 1  # this send counts toward the next hour's cap
