"""Retention against the real database: old history goes (with its deliveries and events), the dedup gate stays."""

from __future__ import annotations

from datetime import time as clock
from datetime import timedelta

from sqlalchemy import func, select

from app.extensions import db
from app.models import Delivery, DeliveryEvent, Notification, Rule, RuleSend
from app.models.types import utcnow
from jobs import retention
from jobs.retention import purge_expired_history, sent_log_cutoff
from tests.factories import make_notification, make_recipient

NOW = utcnow()


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def notification_aged(recipient, days: float) -> Notification:
    notification = make_notification(recipient, created_at=NOW - timedelta(days=days))
    delivery = Delivery(notification_id=notification.id, channel="in_app", status="DELIVERED")
    db.session.add(delivery)
    db.session.flush()
    db.session.add(DeliveryEvent(delivery_id=delivery.id, status="DELIVERED", created_at=notification.created_at))
    db.session.commit()
    return notification


def rule(name: str, every_days: int) -> Rule:
    made = Rule(
        name=name,
        audience={"all": []},
        template_key="t",
        channels=["in_app"],
        window_start=clock(9),
        window_end=clock(19),
        every_days=every_days,
    )
    db.session.add(made)
    db.session.commit()
    return made


def sent(rule_: Rule, recipient, days_ago: int) -> None:
    db.session.add(
        RuleSend(
            rule_id=rule_.id,
            recipient_id=recipient.id,
            local_date=(NOW - timedelta(days=days_ago)).date(),
            timezone="UTC",
            status="sent",
        )
    )
    db.session.commit()


def test_history_older_than_the_retention_goes_with_its_deliveries_and_events(app):
    ana = make_recipient(external_id="ana")
    old = {notification_aged(ana, 40).id, notification_aged(ana, 31).id}
    kept = {notification_aged(ana, 29).id, notification_aged(ana, 0).id}

    result = purge_expired_history(NOW, retention_days=30)

    assert result == {"notifications": 2, "rule_sends": 0, "finished": True}
    assert set(db.session.scalars(select(Notification.id))) == kept
    assert count(Delivery) == 2 and count(DeliveryEvent) == 2, "deliveries and events leave with their notification"
    assert old.isdisjoint(db.session.scalars(select(Delivery.notification_id)))


def test_a_rules_sent_log_outlives_the_retention_while_it_still_gates_a_period(app):
    ana, bob = make_recipient(external_id="ana"), make_recipient(external_id="bob")
    daily, monthly = rule("daily", 1), rule("monthly", 60)
    for days_ago in (45, 31, 3):
        sent(daily, ana, days_ago)
        sent(monthly, bob, days_ago)

    result = purge_expired_history(NOW, retention_days=30)

    assert result["rule_sends"] == 2  # the daily rule's 45- and 31-day-old rows
    left = db.session.execute(select(Rule.name, RuleSend.local_date).join(Rule, Rule.id == RuleSend.rule_id)).all()
    assert sorted((name, (NOW.date() - day).days) for name, day in left) == [
        ("daily", 3),
        ("monthly", 3),
        ("monthly", 31),
        ("monthly", 45),
    ]
    assert sent_log_cutoff(NOW, 30, 60) == (NOW - timedelta(days=62)).date()


def test_a_big_backlog_is_deleted_in_chunks_across_runs(app, monkeypatch):
    ana = make_recipient(external_id="ana")
    for _ in range(5):
        notification_aged(ana, 400)
    monkeypatch.setattr(retention, "CHUNK", 2)

    first = purge_expired_history(NOW, retention_days=365, budget_seconds=0.0001)
    assert first["finished"] is False and first["notifications"] == 2  # one chunk, then out of time
    assert count(Notification) == 3
    assert purge_expired_history(NOW, retention_days=365) == {"notifications": 3, "rule_sends": 0, "finished": True}
    assert count(Notification) == 0


def test_zero_days_keeps_everything(app):
    notification_aged(make_recipient(external_id="ana"), 4000)
    assert purge_expired_history(NOW, retention_days=0)["notifications"] == 0
    assert count(Notification) == 1
