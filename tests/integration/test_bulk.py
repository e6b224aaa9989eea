import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Delivery, DeliveryEvent, Notification, Suppression
from app.models.bulk import insert_ignoring_conflicts, insert_returning, insert_rows, update_by_id
from app.models.types import utcnow
from tests.factories import make_recipient


def test_insert_ignoring_conflicts_counts_only_new_rows(app):
    rows = [
        {"channel": "email", "address": f"a{n}@example.com", "reason": "test", "created_at": utcnow()} for n in range(3)
    ]
    assert insert_ignoring_conflicts(Suppression, rows, ["channel", "address"]) == 3
    more = rows[1:] + [{"channel": "email", "address": "new@example.com", "reason": "test", "created_at": utcnow()}]
    assert insert_ignoring_conflicts(Suppression, more, ["channel", "address"]) == 1
    db.session.commit()
    assert db.session.query(Suppression).count() == 4


def test_rows_alike_and_python_defaults_are_written_like_an_orm_insert(app):
    recipient = make_recipient()
    notification = Notification(
        id="n-bulk",
        recipient_id=recipient.id,
        type="transactional",
        category="c",
        priority="normal",
        channels=["in_app"],
        status="routed",
        data={"a": [1, "x"]},
    )
    db.session.add(notification)
    db.session.commit()
    delivery_id = _delivery("n-bulk")
    # Three identical rows (no column varies) are three rows, not one; created_at comes from its Python default.
    insert_rows(DeliveryEvent, [{"delivery_id": delivery_id, "status": "SENDING", "detail": None}] * 3)
    db.session.commit()
    events = db.session.scalars(select(DeliveryEvent).where(DeliveryEvent.delivery_id == delivery_id)).all()
    assert len(events) == 3 and all(e.created_at is not None for e in events)


def test_insert_returning_gives_only_the_rows_it_inserted_with_json_and_nulls(app):
    recipient = make_recipient()
    now = utcnow()
    rows = [
        {
            "id": f"n{i}",
            "recipient_id": recipient.id,
            "type": "transactional",
            "category": "c",
            "priority": "normal",
            "channels": ["in_app", "push"],
            "status": "routed",
            "data": {"i": i, "nested": {"quote": 'it\'s "x"'}},
            "title": None if i % 2 else f"T{i}",
            "created_at": now,
        }
        for i in range(4)
    ]
    assert insert_ignoring_conflicts(Notification, rows[:1], ["id"]) == 1
    returned = insert_returning(Notification, rows, ["id"], [Notification.id, Notification.title])
    assert sorted(r.id for r in returned) == ["n1", "n2", "n3"]
    db.session.commit()
    stored = db.session.get(Notification, "n2")
    assert stored.data == {"i": 2, "nested": {"quote": 'it\'s "x"'}} and stored.channels == ["in_app", "push"]
    assert stored.title == "T2" and db.session.get(Notification, "n3").title is None
    assert stored.created_at == now


def test_update_by_id_sets_each_row_its_own_values(app):
    rows = [
        {"channel": "email", "address": f"u{n}@example.com", "reason": "before", "created_at": utcnow()}
        for n in range(3)
    ]
    insert_ignoring_conflicts(Suppression, rows, ["channel", "address"])
    ids = db.session.scalars(select(Suppression.id).order_by(Suppression.id)).all()
    update_by_id(Suppression, [{"id": ids[0], "reason": "first"}, {"id": ids[2], "reason": "third"}])
    db.session.commit()
    db.session.expire_all()
    assert [s.reason for s in db.session.scalars(select(Suppression).order_by(Suppression.id))] == [
        "first",
        "before",
        "third",
    ]


def _delivery(notification_id: str) -> int:
    delivery = Delivery(notification_id=notification_id, channel="in_app", status="PENDING")
    db.session.add(delivery)
    db.session.commit()
    return delivery.id


def test_rows_with_different_keys_are_refused_before_anything_is_written(app):
    rows = [
        {"channel": "email", "address": "a@example.com", "reason": "x"},
        {"channel": "email", "address": "b@example.com"},
    ]
    if db.session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite's executemany reports missing keys itself")
    with pytest.raises(ValueError, match="same keys"):
        insert_ignoring_conflicts(Suppression, rows, ["channel", "address"])
    db.session.rollback()
    assert db.session.query(Suppression).count() == 0
