"""What the pipeline reads about recipients, set-based for a whole chunk: people, routing facts, the marketing cap.

One loader for every producer and for the consumer: an API send is a chunk of
one, a campaign batch or a rule batch a chunk of up to a thousand. Facts are
read live (no cache), so a change applies to the next send.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import NamedTuple

from flask import current_app
from sqlalchemy import and_, or_, select

from app.delivery import routing
from app.extensions import db
from app.models import Device, Preference, Recipient, Suppression
from app.models.bulk import among
from app.redis_client import get_redis, key


class Person(NamedTuple):
    """A recipient as plain values (half the cost of an ORM object in a batch of a thousand)."""

    id: int
    external_id: str
    email: str | None
    phone: str | None
    timezone: str | None
    locale: str | None
    attributes: dict
    hard_stop: bool
    quiet_start: object
    quiet_end: object


PERSON_COLUMNS = (
    Recipient.id,
    Recipient.external_id,
    Recipient.email,
    Recipient.phone,
    Recipient.timezone,
    Recipient.locale,
    Recipient.attributes,
    Recipient.hard_stop,
    Recipient.quiet_start,
    Recipient.quiet_end,
)


def load_people(ids) -> dict[int, Person]:
    rows = db.session.execute(select(*PERSON_COLUMNS).where(among(Recipient.id, ids))).all()
    return {row[0]: Person(*row) for row in rows}


def render_context(person, notification) -> dict:
    """The variables every template sees. ``person`` is a :class:`Person` or a ``Recipient``; ``notification``
    anything with ``id``, ``type``, ``category``, ``title``, ``body`` and ``data`` attributes."""
    return {
        "recipient": {
            "id": person.external_id,
            "email": person.email,
            "phone": person.phone,
            "locale": person.locale,
            "timezone": person.timezone,
            "attributes": person.attributes or {},
        },
        "data": notification.data or {},
        "notification": {
            "id": notification.id,
            "type": notification.type,
            "category": notification.category,
            "title": notification.title or "",
            "body": notification.body or "",
        },
    }


def _preferences(ids: list[int], channels: list[str]) -> dict[int, dict]:
    preferences: dict[int, dict] = defaultdict(dict)
    for recipient_id, channel, category, enabled in db.session.execute(
        select(Preference.recipient_id, Preference.channel, Preference.category, Preference.enabled).where(
            among(Preference.recipient_id, ids), Preference.channel.in_(channels)
        )
    ):
        preferences[recipient_id][(channel, category)] = enabled
    return preferences


def _platforms(ids: list[int]) -> dict[int, set[str]]:
    platforms: dict[int, set[str]] = defaultdict(set)
    for recipient_id, platform in db.session.execute(
        select(Device.recipient_id, Device.platform)
        .where(among(Device.recipient_id, ids), Device.active.is_(True))
        .distinct()
    ):
        platforms[recipient_id].add(platform)
    return platforms


def _suppressed(people: list[Person], channels: list[str]) -> set[tuple[str, str]]:
    lookups = [
        (c, [getattr(p, field) for p in people if getattr(p, field)])
        for c, field in (("email", "email"), ("sms", "phone"))
        if c in channels
    ]
    lookups = [(c, addresses) for c, addresses in lookups if addresses]
    if not lookups:
        return set()
    return set(
        db.session.execute(
            select(Suppression.channel, Suppression.address).where(
                or_(*[and_(Suppression.channel == c, Suppression.address.in_(addresses)) for c, addresses in lookups])
            )
        ).all()
    )


# The hourly cap in one Redis command per batch: a script loops over the batch's keys on the server
# (a pipeline of 3 commands per recipient cost more in redis-py's packing and parsing than in Redis).
_CAP_COUNT = """
local counts = {}
for i, cap_key in ipairs(KEYS) do counts[i] = redis.call('ZCOUNT', cap_key, ARGV[1], '+inf') end
return counts
"""
_CAP_RECORD = """
for i, cap_key in ipairs(KEYS) do
  redis.call('ZADD', cap_key, ARGV[1], ARGV[i + 2])
  redis.call('ZREMRANGEBYSCORE', cap_key, '-inf', ARGV[2])
  redis.call('EXPIRE', cap_key, 3600)
end
return #KEYS
"""
_scripts: dict[tuple[int, str], object] = {}


def _script(source: str):
    client = get_redis()
    cache_key = (id(client), source)
    if cache_key not in _scripts:
        _scripts[cache_key] = client.register_script(source)
    return _scripts[cache_key]


def marketing_sent_last_hour(recipient_ids: list[int], now: datetime) -> list[int]:
    """Marketing notifications each recipient got in the last hour (the hourly cap's count), one round trip."""
    if not recipient_ids:
        return []
    hour_ago = (now - timedelta(hours=1)).timestamp()
    counts = _script(_CAP_COUNT)(keys=[key("cap", r) for r in recipient_ids], args=[repr(hour_ago)])
    return [int(count) for count in counts]


def record_marketing_sends(sent: dict[int, str], now: datetime) -> None:
    """Count marketing notifications against each recipient's hourly cap; ``sent`` maps recipient -> notification.

    The member is the notification id, so a re-run of the same batch counts once.
    """
    if not sent:
        return
    hour_ago = (now - timedelta(hours=1)).timestamp()
    _script(_CAP_RECORD)(
        keys=[key("cap", r) for r in sent], args=[repr(now.timestamp()), repr(hour_ago), *sent.values()]
    )


def load_facts(
    people: list[Person], channels: list[str], marketing: bool, now: datetime
) -> dict[int, routing.RecipientFacts]:
    """Routing facts for the whole chunk: a query each for preferences, devices and suppressions."""
    ids = [p.id for p in people]
    preferences = _preferences(ids, channels)
    platforms = _platforms(ids) if {"push", "web_push"} & set(channels) else defaultdict(set)
    suppressed = _suppressed(people, channels)
    cap = current_app.config["MARKETING_CAP_PER_HOUR"]
    recent = marketing_sent_last_hour(ids, now) if marketing and cap > 0 else [0] * len(people)
    facts = {}
    for person, marketing_recent in zip(people, recent, strict=True):
        blocked = {c for c, a in (("email", person.email), ("sms", person.phone)) if a and (c, a) in suppressed}
        facts[person.id] = routing.RecipientFacts(
            hard_stop=person.hard_stop,
            timezone=person.timezone,
            quiet_start=person.quiet_start,
            quiet_end=person.quiet_end,
            preferences=preferences.get(person.id, {}),
            reachable=routing.reachable_channels(person.email, person.phone, platforms[person.id]),
            suppressed=frozenset(blocked),
            marketing_sent_last_hour=marketing_recent,
        )
    return facts


def route_people(
    note: routing.NotificationFacts, people: list[Person], now: datetime
) -> dict[int, list[routing.Decision]]:
    """Routing decisions for every person of a chunk (the one marketing-cap path: read here, counted on send)."""
    facts = load_facts(people, list(note.channels), note.type == "marketing", now)
    cap = current_app.config["MARKETING_CAP_PER_HOUR"]
    return {p.id: routing.route(note, facts[p.id], now, cap) for p in people}
