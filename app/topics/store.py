"""Topic membership: create/update topics, add and remove subscribers in batches, page through them.

Every batch is set-based (one query to find the users, one INSERT ... ON CONFLICT DO NOTHING or one DELETE):
the primary key (topic, recipient) decides, so adding someone twice, or two callers adding at once, is harmless.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select

from app.extensions import db
from app.models import Recipient, Topic, TopicSubscription
from app.models.bulk import insert_ignoring_conflicts
from app.models.types import utcnow


def find_topic(key: str) -> Topic | None:
    return db.session.scalar(select(Topic).where(Topic.key == key))


def upsert_topic(key: str, name: str, user_can_leave: bool) -> tuple[Topic, bool]:
    """Create or replace a topic's name and leave rule; returns (topic, created)."""
    topic = find_topic(key)
    created = topic is None
    if created:
        topic = Topic(key=key)
        db.session.add(topic)
    topic.name, topic.user_can_leave, topic.updated_at = name, user_can_leave, utcnow()
    db.session.commit()
    return topic, created


def create_topic_with(key: str, name: str, recipient_ids: list[int], user_can_leave: bool = True) -> Topic:
    """A new topic and its first members, in the caller's transaction (the demo's "team")."""
    topic = Topic(key=key, name=name, user_can_leave=user_can_leave)
    db.session.add(topic)
    db.session.flush()
    now = utcnow()
    insert_ignoring_conflicts(
        TopicSubscription,
        [{"topic_id": topic.id, "recipient_id": rid, "created_at": now} for rid in recipient_ids],
        ["topic_id", "recipient_id"],
    )
    return topic


def _unique(user_ids: list[str]) -> list[str]:
    return list(dict.fromkeys(user_ids))


def recipient_ids(user_ids: list[str]) -> dict[str, int]:
    """external id -> internal id for the users that exist."""
    if not user_ids:
        return {}
    return dict(
        db.session.execute(select(Recipient.external_id, Recipient.id).where(Recipient.external_id.in_(user_ids))).all()
    )


def ensure_recipients(user_ids: list[str], now: datetime) -> tuple[dict[str, int], list[str]]:
    """The internal ids of ``user_ids``, creating the unknown ones bare (as ``PUT /v1/users/{id}`` with ``{}``)."""
    user_ids = _unique(user_ids)
    known = recipient_ids(user_ids)
    missing = [u for u in user_ids if u not in known]
    created = []
    if missing:
        rows = [
            {
                "external_id": u,
                "locale": "en",
                "attributes": {},
                "hard_stop": False,
                "created_at": now,
                "updated_at": now,
            }
            for u in missing
        ]
        insert_ignoring_conflicts(Recipient, rows, ["external_id"])
        fresh = recipient_ids(missing)
        created = [u for u in missing if u in fresh]  # a concurrent call may have made some: still ours to subscribe
        known.update(fresh)
    return known, created


def add_subscribers(topic: Topic, user_ids: list[str]) -> tuple[int, list[str]]:
    """Subscribe the users (creating unknown ones); returns (subscriptions made, user ids created). One transaction."""
    now = utcnow()
    ids, created = ensure_recipients(user_ids, now)
    rows = [{"topic_id": topic.id, "recipient_id": rid, "created_at": now} for rid in ids.values()]
    added = insert_ignoring_conflicts(TopicSubscription, rows, ["topic_id", "recipient_id"])
    db.session.commit()
    return added, created


def remove_subscribers(topic: Topic, user_ids: list[str]) -> int:
    ids = list(recipient_ids(_unique(user_ids)).values())
    removed = 0
    if ids:
        removed = db.session.execute(
            delete(TopicSubscription).where(
                TopicSubscription.topic_id == topic.id, TopicSubscription.recipient_id.in_(ids)
            )
        ).rowcount
    db.session.commit()
    return removed


def subscriber_count(topic_id: int) -> int:
    return (
        db.session.scalar(
            select(func.count()).select_from(TopicSubscription).where(TopicSubscription.topic_id == topic_id)
        )
        or 0
    )


def subscriber_page(topic_id: int, limit: int, after: int | None) -> tuple[list[tuple[str, datetime]], int | None]:
    """(user id, subscribed at) in recipient order after the cursor, and the next cursor (None on the last page)."""
    query = (
        select(Recipient.id, Recipient.external_id, TopicSubscription.created_at)
        .join(Recipient, Recipient.id == TopicSubscription.recipient_id)
        .where(TopicSubscription.topic_id == topic_id)
        .order_by(Recipient.id)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(Recipient.id > after)
    rows = db.session.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [(external_id, at) for _id, external_id, at in rows], (rows[-1][0] if more else None)


def topics_of(recipient_id: int) -> list[tuple[Topic, datetime]]:
    return [
        (topic, at)
        for topic, at in db.session.execute(
            select(Topic, TopicSubscription.created_at)
            .join(TopicSubscription, TopicSubscription.topic_id == Topic.id)
            .where(TopicSubscription.recipient_id == recipient_id)
            .order_by(Topic.name, Topic.key)
        ).all()
    ]


def leave(recipient_id: int, key: str) -> bool:
    """The end user leaves a topic, if the topic allows it; False when it does not (or they were not in it)."""
    topic = find_topic(key)
    if topic is None or not topic.user_can_leave:
        return False
    removed = db.session.execute(
        delete(TopicSubscription).where(
            TopicSubscription.topic_id == topic.id, TopicSubscription.recipient_id == recipient_id
        )
    ).rowcount
    db.session.commit()
    return bool(removed)


def topics_with_counts(limit: int, offset: int) -> list[tuple[Topic, int]]:
    """Topics by name with their subscriber counts, for the console (one query)."""
    counts = select(TopicSubscription.topic_id, func.count().label("n")).group_by(TopicSubscription.topic_id).subquery()
    rows = db.session.execute(
        select(Topic, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.topic_id == Topic.id)
        .order_by(Topic.name, Topic.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return [(topic, int(n)) for topic, n in rows]
