"""Sending to a topic or a saved audience: a run on the campaign batch path (app/campaigns/runs.py)."""

from __future__ import annotations

from sqlalchemy import select

from app.accept import Accepted, request_fingerprint
from app.campaigns.runs import start_run, topic_filter
from app.extensions import db
from app.models import Audience
from app.topics.store import find_topic


class UnknownTopic(LookupError):
    pass


class UnknownAudience(LookupError):
    pass


def send_to_topic(payload, api_key_id: int | None, idempotency_key: str | None) -> Accepted:
    """Every subscriber of ``payload.topic`` but the ``exclude``d gets the notification, through one run."""
    topic = find_topic(payload.topic)
    if topic is None:
        raise UnknownTopic(payload.topic)
    return start_run(
        payload,
        name=f"Topic: {topic.name}",
        label=f"topic {topic.key}",
        audience_filter=topic_filter(topic.key, payload.exclude),
        fingerprint=request_fingerprint(payload),
        api_key_id=api_key_id,
        idempotency_key=idempotency_key,
    )


def send_to_audience(request, api_key_id: int | None, idempotency_key: str | None) -> Accepted:
    """``request`` is a bulk call naming a saved audience (by id or name); its filter is copied into the run."""
    column = Audience.id if isinstance(request.audience, int) else Audience.name
    audience = db.session.scalar(select(Audience).where(column == request.audience))
    if audience is None:
        raise UnknownAudience(request.audience)
    return start_run(
        request.notification,
        name=f"Audience: {audience.name}",
        label=audience.name,
        audience_filter=audience.filter,
        fingerprint=request_fingerprint(request),
        api_key_id=api_key_id,
        idempotency_key=idempotency_key,
    )
