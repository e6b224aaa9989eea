"""Daily rule evaluation against the real database: local windows, the dedup gate, opt-outs read live."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Delivery, Notification, Preference, Recipient, Rule, RuleSend, Suppression
from app.models.rules import EXPIRED, SENT
from app.models.rules import SUPPRESSED as CLAIM_SUPPRESSED
from app.pipeline.deliver import deliver
from app.recipients import erase_recipient
from app.rules.evaluate import dry_run, evaluate_rule
from app.rules.windows import idempotency_key
from tests.factories import make_recipient, make_template

LOW_BALANCE = {"all": [{"field": "attributes.balance", "op": "<", "field_value": "attributes.low_balance_threshold"}]}


def at(zone: str, year, month, day, hour, minute=0) -> datetime:
    """The UTC instant of a local wall-clock time, computed with zoneinfo (DST-aware)."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def make_rule(**fields) -> Rule:
    make_template(
        key="low_balance",
        category="low_balance",
        variants={
            "en": {
                "in_app": {
                    "title": "Balance below {{ recipient.attributes.low_balance_threshold }}",
                    "body": "Now {{ recipient.attributes.balance }}",
                },
                "push": {"title": "Low balance", "body": "Your balance is {{ recipient.attributes.balance }}"},
                "sms": {"text": "Low balance"},
            }
        },
    )
    values = {
        "name": "Low balance",
        "audience": LOW_BALANCE,
        "type": "transactional",
        "category": "low_balance",
        "priority": "normal",
        "template_key": "low_balance",
        "channels": ["in_app"],
        "window_start": time(9),
        "window_end": time(19),
        "every_days": 1,
        "no_timezone_policy": "utc",
        "enabled": True,
    }
    values.update(fields)
    rule = Rule(**values)
    db.session.add(rule)
    db.session.commit()
    return rule


def low(zone: str | None, **fields) -> Recipient:
    attributes = {"balance": 20, "low_balance_threshold": 50, **fields.pop("attributes", {})}
    return make_recipient(timezone=zone, attributes=attributes, **fields)


def notified(recipient: Recipient) -> int:
    return db.session.scalar(
        select(func.count()).select_from(Notification).where(Notification.recipient_id == recipient.id)
    )


def test_singapore_is_notified_at_nine_local_and_not_at_eight_fifty_nine(app):
    rule = make_rule()
    singapore = low("Asia/Singapore")
    assert evaluate_rule(rule, at("Asia/Singapore", 2026, 6, 15, 8, 59)).claimed == 0
    assert notified(singapore) == 0
    result = evaluate_rule(rule, at("Asia/Singapore", 2026, 6, 15, 9, 0))
    assert (result.claimed, result.sent) == (1, 1)
    note = db.session.scalar(select(Notification).where(Notification.recipient_id == singapore.id))
    assert note.title == "Balance below 50" and note.body == "Now 20" and note.inbox_at is not None
    assert note.idempotency_key == idempotency_key(rule.id, singapore.id, date(2026, 6, 15))
    assert db.session.scalar(select(Delivery.status).where(Delivery.notification_id == note.id)) == "DELIVERED"


def test_san_francisco_follows_nine_hours_later_on_a_pdt_date(app):
    rule = make_rule()
    singapore = low("Asia/Singapore")
    sg_nine = at("Asia/Singapore", 2026, 6, 15, 9)
    sf_nine = at("America/Los_Angeles", 2026, 6, 15, 9)
    # June: San Francisco is on PDT (UTC-7, 15 h behind Singapore's UTC+8); in January (PST) it would be 16 h.
    assert sf_nine - sg_nine == timedelta(hours=15)
    assert at("America/Los_Angeles", 2026, 1, 15, 9) - at("Asia/Singapore", 2026, 1, 15, 9) == timedelta(hours=16)
    evaluate_rule(rule, sg_nine)
    # Dropped below the threshold after 19:00 on the 14th in San Francisco: the 15th's wave is theirs.
    san_francisco = low("America/Los_Angeles")
    evaluate_rule(rule, sf_nine - timedelta(minutes=1))
    assert (notified(singapore), notified(san_francisco)) == (1, 0)
    evaluate_rule(rule, sf_nine)
    assert (notified(singapore), notified(san_francisco)) == (1, 1)


def test_a_day_of_evaluations_every_15_minutes_sends_only_inside_nine_to_seven_local(app):
    rule = make_rule()
    zones = [
        "Asia/Singapore",
        "America/Los_Angeles",
        "Europe/Lisbon",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
        "America/St_Johns",
        "Australia/Lord_Howe",
    ]
    people = {low(zone).id: zone for zone in zones}
    moment = datetime(2026, 6, 15, tzinfo=UTC)
    while moment < datetime(2026, 6, 17, tzinfo=UTC):
        evaluate_rule(rule, moment)
        moment += timedelta(minutes=15)
    sent = db.session.execute(select(Notification.recipient_id, Notification.created_at)).all()
    for recipient_id, created in sent:
        local_time = created.astimezone(ZoneInfo(people[recipient_id]))
        assert time(9) <= local_time.time() < time(19), (people[recipient_id], local_time)
    per_day = db.session.execute(
        select(RuleSend.recipient_id, RuleSend.local_date, func.count()).group_by(
            RuleSend.recipient_id, RuleSend.local_date
        )
    ).all()
    assert all(count == 1 for _r, _d, count in per_day)
    # A local day that starts inside the sweep is sent at its first evaluation at or after 09:00: 09:00 exactly.
    start = datetime(2026, 6, 15, tzinfo=UTC)
    full_days = [
        created.astimezone(ZoneInfo(people[r]))
        for r, created in sent
        if datetime.combine(created.astimezone(ZoneInfo(people[r])).date(), time(0), ZoneInfo(people[r])) >= start
    ]
    assert {moment.tzinfo.key for moment in full_days} == set(zones)
    assert {moment.time() for moment in full_days} == {time(9)}


@pytest.mark.parametrize(("day", "label"), [(8, "spring-forward"), (1, "fall-back")])
def test_los_angeles_dst_transition_days_use_the_local_wall_clock(app, day, label):
    month = 3 if label == "spring-forward" else 11
    rule = make_rule()
    person = low("America/Los_Angeles")
    # Every 15 minutes over the whole UTC span of the local day: sent once, at the first slot >= 09:00 local.
    start = datetime(2026, month, day, tzinfo=ZoneInfo("America/Los_Angeles")).astimezone(UTC)
    sends = []
    moment = start
    while moment < start + timedelta(hours=26):
        if evaluate_rule(rule, moment).sent:
            sends.append(moment)
        moment += timedelta(minutes=15)
    assert sends == [at("America/Los_Angeles", 2026, month, day, 9)]
    assert notified(person) == 1


def test_date_line_zones_at_the_same_instant_have_different_local_dates(app):
    rule = make_rule()
    kiritimati, pago_pago = low("Pacific/Kiritimati"), low("Pacific/Pago_Pago")
    instant = datetime(
        2026, 6, 15, 22, 0, tzinfo=UTC
    )  # 12:00 on the 16th in Kiritimati, 11:00 on the 15th in Pago Pago
    result = evaluate_rule(rule, instant)
    assert sorted(t.local_date for t in result.targets) == [date(2026, 6, 15), date(2026, 6, 16)]
    claims = dict(db.session.execute(select(RuleSend.recipient_id, RuleSend.local_date)).all())
    assert claims == {kiritimati.id: date(2026, 6, 16), pago_pago.id: date(2026, 6, 15)}
    # Later the same local days: nobody again.
    evaluate_rule(rule, instant + timedelta(hours=4))
    assert (notified(kiritimati), notified(pago_pago)) == (1, 1)
    # 10:00 on the 16th in Pago Pago is 11:00 on the 17th in Kiritimati: a new local day for both.
    evaluate_rule(rule, at("Pacific/Pago_Pago", 2026, 6, 16, 10))
    assert (notified(kiritimati), notified(pago_pago)) == (2, 2)


def test_every_evaluation_of_the_day_sends_at_most_once(app):
    rule = make_rule()
    person = low("Europe/Lisbon")
    for hour in range(9, 19):
        evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, 15, hour, 30))
    assert notified(person) == 1
    evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, 16, 9))
    assert notified(person) == 2


def test_every_three_days_sends_once_per_period(app):
    rule = make_rule(every_days=3)
    person = low("Europe/Lisbon")
    for day in range(1, 10):
        evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, day, 10))
    assert notified(person) == 3
    periods = sorted(db.session.scalars(select(RuleSend.local_date)))
    assert all((b - a).days == 3 for a, b in pairwise(periods))


def test_recipients_without_a_zone_get_the_utc_window_by_default(app):
    rule = make_rule()
    nowhere = low(None, attributes={"country": "SG"})
    evaluate_rule(rule, datetime(2026, 6, 15, 8, 59, tzinfo=UTC))
    assert notified(nowhere) == 0
    evaluate_rule(rule, datetime(2026, 6, 15, 9, 0, tzinfo=UTC))
    assert notified(nowhere) == 1
    assert db.session.scalar(select(RuleSend.timezone)) == "UTC"


def test_country_policy_infers_the_zone_from_the_country_attribute(app):
    rule = make_rule(no_timezone_policy="country")
    singaporean = low(None, attributes={"country": "sg"})
    unknown = low(None, attributes={"country": "ZZ"})
    evaluate_rule(rule, at("Asia/Singapore", 2026, 6, 15, 9))  # 01:00 UTC
    assert (notified(singaporean), notified(unknown)) == (1, 0)
    assert db.session.scalar(select(RuleSend.timezone)) == "country:SG"
    evaluate_rule(rule, datetime(2026, 6, 15, 9, tzinfo=UTC))
    assert notified(unknown) == 1  # an unknown country falls back to UTC


def test_country_with_several_zones_waits_until_all_of_them_are_inside_the_window(app):
    rule = make_rule(no_timezone_policy="country")
    american = low(None, attributes={"country": "US"})
    evaluate_rule(rule, at("America/New_York", 2026, 6, 15, 10))  # Hawaii is at 04:00
    assert notified(american) == 0
    evaluate_rule(rule, at("Pacific/Honolulu", 2026, 6, 15, 9))  # 15:00 in New York; Alaska/Hawaii all >= 09:00
    assert notified(american) == 1


def test_only_below_their_own_threshold_and_balance_flicker_is_not_taken_back(app):
    rule = make_rule()
    poor = low("Europe/Lisbon")
    rich = low("Europe/Lisbon", attributes={"balance": 5000})
    picky = low("Europe/Lisbon", attributes={"balance": 90, "low_balance_threshold": 100})
    evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, 15, 9))
    assert (notified(poor), notified(rich), notified(picky)) == (1, 0, 1)
    poor.attributes = {**poor.attributes, "balance": 5000}  # salary arrived
    db.session.commit()
    evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, 15, 12))
    evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, 16, 9))
    assert notified(poor) == 1
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.recipient_id == poor.id, Notification.inbox_at.is_not(None))
        )
        == 1
    )


def test_a_changed_threshold_applies_at_the_next_run(app):
    rule = make_rule()
    person = low("Europe/Lisbon", attributes={"balance": 60, "low_balance_threshold": 50})
    evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, 15, 9))
    assert notified(person) == 0
    person.attributes = {**person.attributes, "low_balance_threshold": 100}
    db.session.commit()
    evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, 15, 9, 15))
    assert notified(person) == 1


def test_opt_outs_are_read_live_at_evaluation(app):
    rule = make_rule(channels=["in_app", "sms"])
    muted = low("Europe/Lisbon")
    switched_off = low("Europe/Lisbon")
    stopped = low("Europe/Lisbon", phone="+14155550101")
    hard = low("Europe/Lisbon", hard_stop=True)
    db.session.add_all(
        [
            Preference(recipient_id=muted.id, channel="in_app", category="low_balance", enabled=False),
            Preference(recipient_id=muted.id, channel="sms", category="low_balance", enabled=False),
            Preference(recipient_id=switched_off.id, channel="in_app", category="*", enabled=False),
            Suppression(channel="sms", address="+14155550101", reason="STOP"),
        ]
    )
    db.session.commit()
    assert dry_run(rule, at("Europe/Lisbon", 2026, 6, 15, 9)).total == 1  # only `stopped`, in-app still open
    evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, 15, 9))
    assert (notified(muted), notified(switched_off), notified(hard)) == (0, 0, 0)
    channels = dict(
        db.session.execute(
            select(Delivery.channel, Delivery.status).join(Notification).where(Notification.recipient_id == stopped.id)
        ).all()
    )
    assert channels == {"in_app": "DELIVERED", "sms": "SUPPRESSED"}


def test_opt_out_after_the_claim_is_honoured_before_sending(app):
    rule = make_rule()
    person = low("Europe/Lisbon")
    now = at("Europe/Lisbon", 2026, 6, 15, 9)
    assert evaluate_rule(rule, now, send=False).claimed == 1
    db.session.add(Preference(recipient_id=person.id, channel="in_app", category="low_balance", enabled=False))
    db.session.commit()
    result = evaluate_rule(rule, now)
    assert (result.sent, result.suppressed) == (0, 1)
    assert notified(person) == 0
    assert db.session.execute(select(RuleSend.status, RuleSend.reason)).one() == (CLAIM_SUPPRESSED, "opted_out")


def test_stop_on_low_balance_leaves_fraud_and_security_notices_on(app):
    from app.accept import accept_notification
    from app.schemas import NotificationCreate
    from jobs.delivery import route_notification

    rule = make_rule(channels=["sms"])
    person = low("Europe/Lisbon", phone="+14155550102")
    db.session.add(Preference(recipient_id=person.id, channel="sms", category="low_balance", enabled=False))
    db.session.commit()
    evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, 15, 9))
    assert notified(person) == 0
    for kind, category in (("transactional", "fraud"), ("security", "security")):
        accepted = accept_notification(
            NotificationCreate(
                user_id=person.external_id,
                type=kind,
                category=category,
                title="Card used",
                body="Was it you?",
                channels=["sms"],
            ),
            None,
            None,
        )
        route_notification(accepted.id)
        status = db.session.scalar(select(Delivery.status).where(Delivery.notification_id == accepted.id))
        assert status != "SUPPRESSED", (kind, category)


def test_erased_recipients_take_their_sent_log_with_them_and_are_never_matched(app):
    rule = make_rule()
    person, other = low("Europe/Lisbon"), low("Europe/Lisbon")
    evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, 15, 9))
    erase_recipient(person, actor="test")
    assert db.session.scalar(select(func.count()).select_from(RuleSend)) == 1
    evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, 16, 9))
    assert db.session.scalar(select(func.count()).select_from(RuleSend).where(RuleSend.recipient_id == other.id)) == 2


def test_zone_change_after_the_claim_leaves_the_claim_waiting_then_sends_inside_the_new_window(app):
    rule = make_rule()
    person = low("Asia/Singapore")
    singapore_nine = at("Asia/Singapore", 2026, 6, 15, 9)
    evaluate_rule(rule, singapore_nine, send=False)
    person.timezone = "America/New_York"  # moved: it is 21:00 on the 14th there
    db.session.commit()
    result = evaluate_rule(rule, singapore_nine)
    assert (result.sent, result.waiting) == (0, 1)
    assert notified(person) == 0
    # The claim is for the 15th; 09:00 on the 15th in New York is inside the window: that same claim is sent.
    result = evaluate_rule(rule, at("America/New_York", 2026, 6, 15, 9))
    assert result.sent == 1 and result.claimed == 0
    assert db.session.execute(select(RuleSend.status, RuleSend.local_date)).one() == (SENT, date(2026, 6, 15))


def test_a_claim_whose_local_day_is_over_expires_instead_of_sending_late(app):
    rule = make_rule()
    person = low("America/Los_Angeles")
    evaluate_rule(rule, at("America/Los_Angeles", 2026, 6, 15, 18, 45), send=False)
    person.timezone = "America/New_York"  # 21:45 on the 15th there: the 15th's window is over
    db.session.commit()
    result = evaluate_rule(rule, at("America/Los_Angeles", 2026, 6, 15, 18, 45))
    assert result.expired == 1 and notified(person) == 0
    assert db.session.scalar(select(RuleSend.status).where(RuleSend.local_date == date(2026, 6, 15))) == EXPIRED


def test_push_batches_recheck_the_window_before_calling_the_provider(app, recorded_push):
    from app.models import Device

    rule = make_rule(channels=["push"])
    person = low("Europe/Lisbon")
    db.session.add(Device(recipient_id=person.id, platform="android", token="tok-1"))
    db.session.commit()
    nine = at("Europe/Lisbon", 2026, 6, 15, 9)
    evaluate_rule(rule, nine)
    delivery = db.session.scalar(select(Delivery).where(Delivery.channel == "push"))
    assert delivery.status == "PENDING"
    # The job runs late, at 19:05 local: it must not call the provider.
    assert deliver([delivery.id], at("Europe/Lisbon", 2026, 6, 15, 19, 5)).counts["suppressed:outside_send_window"] == 1
    assert recorded_push == []
    db.session.refresh(delivery)
    assert (delivery.status, delivery.reason) == ("SUPPRESSED", "outside_send_window")


def test_push_batch_sends_once_with_the_claim_derived_key(app, recorded_push):
    from app.models import Device

    rule = make_rule(channels=["push"])
    person = low("Europe/Lisbon")
    db.session.add(Device(recipient_id=person.id, platform="android", token="tok-2"))
    db.session.commit()
    nine = at("Europe/Lisbon", 2026, 6, 15, 9)
    evaluate_rule(rule, nine)
    delivery = db.session.scalar(select(Delivery).where(Delivery.channel == "push"))
    assert deliver([delivery.id], nine).counts["sent:push"] == 1
    assert deliver([delivery.id], nine).counts["sent:push"] == 0  # a re-run job finds nothing to claim
    note = db.session.get(Notification, delivery.notification_id)
    assert [m.idempotency_key for m in recorded_push] == [f"herald-{note.id}-push"]
    assert recorded_push[0].content == {"title": "Low balance", "body": "Your balance is 20"}
    assert [d.token for d in recorded_push[0].devices] == ["tok-2"]
    assert note.idempotency_key == idempotency_key(rule.id, person.id, date(2026, 6, 15))


def test_dry_run_counts_per_zone_and_samples_without_writing(app):
    rule = make_rule()
    for _ in range(3):
        low("Europe/Lisbon")
    low("Europe/London")
    low("Asia/Tokyo")  # 17:00 in Lisbon is 01:00 in Tokyo
    result = dry_run(rule, at("Europe/Lisbon", 2026, 6, 15, 17))
    assert result.total == 4
    assert result.by_zone == [("Europe/Lisbon", 3), ("Europe/London", 1)]
    assert len(result.sample) == 4
    assert db.session.scalar(select(func.count()).select_from(RuleSend)) == 0


def test_disabled_rule_claims_nothing(app):
    rule = make_rule(enabled=False)
    low("Europe/Lisbon")
    assert evaluate_rule(rule, at("Europe/Lisbon", 2026, 6, 15, 9)).claimed == 0


def test_scheduler_slot_runs_one_pass_per_slot(app):
    from jobs.rules import evaluate_rules_if_due

    make_rule()
    person = low("Europe/Lisbon").id
    nine = at("Europe/Lisbon", 2026, 6, 15, 9)
    assert evaluate_rules_if_due(nine, 15) is not None
    assert evaluate_rules_if_due(nine + timedelta(minutes=5), 15) is None
    assert evaluate_rules_if_due(nine + timedelta(minutes=15), 15) is not None
    assert (
        db.session.scalar(select(func.count()).select_from(Notification).where(Notification.recipient_id == person))
        == 1
    )
    assert db.session.scalar(select(RuleSend.status)) == SENT
