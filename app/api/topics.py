"""/v1/topics: create topics, add and remove subscribers in batches, page through them; a user's topics."""

from __future__ import annotations

import re

from flask import abort, jsonify, request

from app.api.blueprint import bp
from app.api.routes import USER_ID, BadRequest, dump, parse_body, recipient_or_404
from app.topics import schemas, store
from app.topics.schemas import TOPIC_KEY_PATTERN

TOPIC_KEY = "<string(maxlength=128):key>"


def _topic_or_404(key: str):
    topic = store.find_topic(key) if re.fullmatch(TOPIC_KEY_PATTERN, key) else None
    if topic is None:
        abort(404, f"no topic with key {key!r}; create it with PUT /v1/topics/{{key}}")
    return topic


def topic_json(topic) -> dict:
    return dump(
        schemas.Topic,
        key=topic.key,
        name=topic.name,
        user_can_leave=topic.user_can_leave,
        subscribers=store.subscriber_count(topic.id),
        created_at=topic.created_at,
        updated_at=topic.updated_at,
    )


@bp.put(f"/topics/{TOPIC_KEY}")
def put_topic(key: str):
    if not re.fullmatch(TOPIC_KEY_PATTERN, key):
        raise BadRequest([{"field": "key", "message": f"a topic key matches {TOPIC_KEY_PATTERN}"}])
    fields = parse_body(schemas.TopicUpsert)
    topic, created = store.upsert_topic(key, fields.name, fields.user_can_leave)
    return jsonify(topic_json(topic)), (201 if created else 200)


@bp.get(f"/topics/{TOPIC_KEY}")
def get_topic(key: str):
    return jsonify(topic_json(_topic_or_404(key)))


@bp.put(f"/topics/{TOPIC_KEY}/subscribers")
def put_subscribers(key: str):
    topic = _topic_or_404(key)
    added, created = store.add_subscribers(topic, parse_body(schemas.SubscribersChange).user_ids)
    return jsonify(
        dump(
            schemas.SubscribersChanged, added=added, created_users=created, subscribers=store.subscriber_count(topic.id)
        )
    )


@bp.delete(f"/topics/{TOPIC_KEY}/subscribers")
def delete_subscribers(key: str):
    topic = _topic_or_404(key)
    removed = store.remove_subscribers(topic, parse_body(schemas.SubscribersChange).user_ids)
    return jsonify(dump(schemas.SubscribersChanged, removed=removed, subscribers=store.subscriber_count(topic.id)))


@bp.get(f"/topics/{TOPIC_KEY}/subscribers")
def get_subscribers(key: str):
    topic = _topic_or_404(key)
    limit_text = request.args.get("limit", "50")
    if not re.fullmatch(r"-?[0-9]{1,6}", limit_text) or not 1 <= int(limit_text) <= schemas.MAX_PAGE:
        raise BadRequest([{"field": "limit", "message": f"must be an integer from 1 to {schemas.MAX_PAGE}"}])
    cursor = request.args.get("cursor") or None
    if cursor is not None and not re.fullmatch(schemas.SUBSCRIBER_CURSOR_PATTERN, cursor):
        raise BadRequest([{"field": "cursor", "message": "must be a next_cursor this API returned"}])
    items, next_after = store.subscriber_page(topic.id, int(limit_text), int(cursor) if cursor else None)
    return jsonify(
        dump(
            schemas.SubscriberPage,
            items=[{"user_id": u, "subscribed_at": at} for u, at in items],
            next_cursor=str(next_after) if next_after is not None else None,
        )
    )


@bp.get(f"/users/{USER_ID}/topics")
def get_user_topics(user_id: str):
    recipient = recipient_or_404(user_id)
    return jsonify(
        dump(
            schemas.UserTopics,
            topics=[
                {"key": t.key, "name": t.name, "user_can_leave": t.user_can_leave, "subscribed_at": at}
                for t, at in store.topics_of(recipient.id)
            ],
        )
    )
