"""Reading broadcasts: which ones target a reader right now, their inbox items, and the reader's own copy.

Everything is decided at read time, for the one reader:

* a broadcast is live while its campaign is running (paused or cancelled ones are hidden from readers who
  have no copy yet), from its launch instant, within ``HERALD_RETENTION_DAYS``;
* its audience filter holds the reader -- :func:`app.audiences.filters.compile_filter`, the same evaluator
  campaigns and rules use, as one SQL expression per broadcast over the reader's row -- and the reader
  existed when it launched (a recipient created later is not in the audience, as with a fanned-out campaign);
* routing lets it reach their inbox: :func:`app.delivery.routing.route` with their in-app preferences and hard
  stop, as it would for a fanned-out notification (no hourly marketing cap: a broadcast is one message).

The reader's copy is "materialised" -- a real notification row, origin ``campaign:<id>``, unique per
(campaign, recipient) and with the id :func:`item_id` -- when they read, open or archive it. From then on
it is an ordinary inbox row: a later cancel or a change of attributes does not take it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, select

from app.audiences.filters import compile_filter
from app.broadcasts.evaluate import audience_hits
from app.campaigns.fanout import campaign_context, notification_rows_for
from app.channels import inbox_channel
from app.delivery import routing
from app.extensions import db
from app.models import Broadcast, Campaign, Notification, Recipient
from app.models.bulk import insert_ignoring_conflicts
from app.models.campaigns import RUNNING
from app.pipeline.facts import PERSON_COLUMNS, Person, load_facts, load_people


@dataclass(frozen=True)
class Live:
    """A broadcast that is live now, as plain values."""

    id: int
    campaign_id: int
    audience_filter: dict
    note: routing.NotificationFacts
    launched_at: datetime


@dataclass(frozen=True)
class PendingItem:
    """A live broadcast that targets the reader and that they have no copy of yet: unread, in the inbox at its
    launch instant, under the id its copy will have."""

    id: str
    inbox_at: datetime
    broadcast: Live
    read_at: None = None


@dataclass(frozen=True)
class Reader:
    person: Person | None
    pending: list[PendingItem]


def item_id(broadcast_id: int, recipient_id: int) -> str:
    """32 hex digits like a notification id, but derived: a uuid4's 17th digit is 8-b, this one's 0-7."""
    return f"{broadcast_id:016x}{recipient_id:016x}"


def parse_item_id(value: str) -> tuple[int, int] | None:
    """(broadcast id, recipient id) of an id :func:`item_id` made, else None."""
    if not re.fullmatch(r"[0-9a-f]{32}", value or "") or value[16] not in "01234567":
        return None
    return int(value[:16], 16), int(value[16:], 16)


def live(now: datetime) -> list[Live]:
    """Every broadcast live now, newest first (a handful: each is a whole campaign)."""
    query = (
        select(
            Broadcast.id,
            Broadcast.campaign_id,
            Broadcast.audience_filter,
            Broadcast.type,
            Broadcast.category,
            Broadcast.priority,
            Broadcast.launched_at,
        )
        .join(Campaign, Campaign.id == Broadcast.campaign_id)
        .where(Campaign.status == RUNNING, Broadcast.launched_at <= now)
        .order_by(Broadcast.launched_at.desc(), Broadcast.id.desc())
    )
    days = current_app.config["RETENTION_DAYS"]
    if days:
        query = query.where(Broadcast.launched_at >= now - timedelta(days=days))
    channels = (inbox_channel(),)
    return [
        Live(b_id, c_id, tree, routing.NotificationFacts(kind, category, priority, channels), at)
        for b_id, c_id, tree, kind, category, priority, at in db.session.execute(query)
    ]


def targeting(recipient_id: int, candidates: list[Live], now: datetime) -> tuple[Person | None, list[Live]]:
    """The reader (None when no broadcast targets them), and those of ``candidates`` whose audience holds them now
    and that they have no copy of: one query for every filter at once (app/broadcasts/evaluate.py), one for the
    reader, one for their in-app preferences."""
    if not candidates:
        return None, []
    hits = audience_hits(recipient_id, candidates, now)
    if hits is None:
        return None, []
    matched = [b for b, hit in zip(candidates, hits, strict=True) if hit]
    if not matched:
        return None, []
    person = load_people([recipient_id])[recipient_id]
    facts = load_facts([person], [inbox_channel()], False, now)[person.id]
    return person, [b for b in matched if routing.route(b.note, facts, now, 0)[0].action != routing.SUPPRESS]


def reader(recipient_id: int, now: datetime) -> Reader:
    """The reader and their pending broadcasts (targeted, no copy yet), newest first."""
    person, targeted = targeting(recipient_id, live(now), now)
    return Reader(person, [PendingItem(item_id(b.id, recipient_id), b.launched_at, b) for b in targeted])


def rows_for(person: Person, items: list[PendingItem], now: datetime) -> list[dict]:
    """The reader's copies as notification rows, rendered by the fan-out's own row builder; a broadcast whose
    in-app content does not render for them is left out (a fanned-out one would not reach their inbox either)."""
    rows = []
    wanted = [item.broadcast.campaign_id for item in items]
    campaigns = {c.id: c for c in db.session.scalars(select(Campaign).where(Campaign.id.in_(wanted)))} if items else {}
    for item in items:
        campaign = campaigns[item.broadcast.campaign_id]
        built, failures = notification_rows_for(campaign_context(campaign), [person], now)
        if failures:
            continue
        rows.append({**built[0], "id": item.id, "collapse_key": None, "inbox_at": item.inbox_at})
    return rows


def views(person: Person, items: list[PendingItem], now: datetime) -> dict[str, Notification]:
    """Unsaved notifications to show for pending items (nothing is written)."""
    return {row["id"]: Notification(**row) for row in rows_for(person, items, now)}


def materialise(recipient_id: int, ids: list[str] | None, now: datetime) -> int:
    """Write the reader's copies of their pending broadcasts among ``ids`` (all of them when None), so marking
    read or archiving them is the ordinary row update. Idempotent: unique per (campaign, recipient). The caller
    commits. Returns how many copies this call wrote."""
    if ids is not None and not any(parse_item_id(i) for i in ids):
        return 0
    found = reader(recipient_id, now)
    chosen = [item for item in found.pending if ids is None or item.id in ids]
    if not chosen:
        return 0
    return insert_ignoring_conflicts(Notification, rows_for(found.person, chosen, now), ["campaign_id", "recipient_id"])


def targeted_among(broadcast_id: int, recipient_ids: list[int], now: datetime, chunk: int = 1000) -> list[int]:
    """Which of ``recipient_ids`` (the streams open in one web process) a live broadcast targets: one query per
    thousand, the same filter and routing as :func:`targeting`."""
    candidates = [b for b in live(now) if b.id == broadcast_id]
    if not candidates or not recipient_ids:
        return []
    broadcast, dialect = candidates[0], db.session.get_bind().dialect.name
    condition = and_(
        compile_filter(broadcast.audience_filter, dialect, now), Recipient.created_at <= broadcast.launched_at
    )
    targeted = []
    for start in range(0, len(recipient_ids), chunk):
        ids = recipient_ids[start : start + chunk]
        people = [
            Person(*row) for row in db.session.execute(select(*PERSON_COLUMNS).where(Recipient.id.in_(ids), condition))
        ]
        facts = load_facts(people, [inbox_channel()], False, now) if people else {}
        targeted += [
            p.id for p in people if routing.route(broadcast.note, facts[p.id], now, 0)[0].action != routing.SUPPRESS
        ]
    return targeted
