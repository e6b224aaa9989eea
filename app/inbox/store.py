"""Inbox queries and read state, shared by the /v1 API and the inbox pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flask import has_request_context, request
from sqlalchemy import and_, exists, func, not_, or_, select, update
from sqlalchemy.orm import aliased

from app.broadcasts import reading as broadcasts
from app.extensions import db
from app.models import Notification
from app.models.types import utcnow
from app.outbound_webhooks import events as webhook_events
from app.outbound_webhooks.outbox import emit
from app.realtime.publish import publish_to_user

MAX_LIMIT = 100


class BadCursor(ValueError):
    pass


# "<microseconds since the epoch>-<notification id>": every string of this shape is a position, so the
# OpenAPI document can state the format exactly (a malformed cursor is a 400, a well-formed one a page).
CURSOR_PATTERN = r"^([0-9]{1,16}-[0-9a-f]{32})?$"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def encode_cursor(notification: Notification) -> str:
    return f"{(notification.inbox_at - EPOCH) // MICROSECOND}-{notification.id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    if not re.fullmatch(CURSOR_PATTERN, cursor) or not cursor:
        raise BadCursor("cursor is not one this API returned")
    micros, _, notification_id = cursor.partition("-")
    return EPOCH + int(micros) * MICROSECOND, notification_id


# Per request (not ``g``: an app context may outlive many requests, as in tests and CLI commands).
READERS = "herald.broadcast_readers"


def _reader(recipient_id: int) -> broadcasts.Reader:
    """The reader's pending broadcasts (app/broadcasts/reading.py), worked out once per request."""
    if not has_request_context():
        return broadcasts.reader(recipient_id, utcnow())
    cache = request.environ.setdefault(READERS, {})
    if recipient_id not in cache:
        cache[recipient_id] = broadcasts.reader(recipient_id, utcnow())
    return cache[recipient_id]


def _materialise(recipient_id: int, ids: list[str] | None) -> None:
    """Write the reader's copies of the pending broadcasts among ``ids`` (None: all) before a row update."""
    if broadcasts.materialise(recipient_id, ids, utcnow()) and has_request_context():
        request.environ.setdefault(READERS, {}).pop(recipient_id, None)


def _with_broadcasts(recipient_id: int, rows: list, limit: int, cursor: str | None) -> list:
    """``rows`` (newest first, up to ``limit`` + 1) with the reader's pending broadcasts merged in by
    (inbox_at, id); only the broadcasts that land on the page are rendered."""
    found = _reader(recipient_id)
    pending = found.pending
    if cursor:
        at, last_id = decode_cursor(cursor)
        pending = [p for p in pending if (p.inbox_at, p.id) < (at, last_id)]
    if not pending:
        return list(rows)
    merged = sorted([*rows, *pending], key=lambda item: (item.inbox_at, item.id), reverse=True)[: limit + 1]
    shown = broadcasts.views(found.person, [m for m in merged if isinstance(m, broadcasts.PendingItem)], utcnow())
    return [
        shown.get(m.id) if isinstance(m, broadcasts.PendingItem) else m
        for m in merged
        if m.id in shown or not isinstance(m, broadcasts.PendingItem)
    ]


def _visible(recipient_id: int):
    return and_(
        Notification.recipient_id == recipient_id,
        Notification.inbox_at.is_not(None),
        Notification.archived_at.is_(None),
    )


def inbox_page(
    recipient_id: int, limit: int = 20, cursor: str | None = None, unread_only: bool = False
) -> tuple[list[Notification], str | None]:
    """Newest first, keyset-paginated on (inbox_at, id) so pages stay stable while new items arrive."""
    query = select(Notification).where(_visible(recipient_id))
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    query = _page_after(query, cursor)
    rows = db.session.scalars(
        query.order_by(Notification.inbox_at.desc(), Notification.id.desc()).limit(limit + 1)
    ).all()
    rows = _with_broadcasts(recipient_id, rows, limit, cursor)
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return list(rows[:limit]), next_cursor


# The most members one collapsed entry shows (and marks read or archives at once).
GROUP_LIMIT = MAX_LIMIT


def _page_after(query, cursor: str | None):
    if not cursor:
        return query
    at, last_id = decode_cursor(cursor)
    return query.where(or_(Notification.inbox_at < at, and_(Notification.inbox_at == at, Notification.id < last_id)))


def entries_page(
    recipient_id: int, limit: int = 20, cursor: str | None = None, unread_only: bool = False
) -> tuple[list[Notification], str | None]:
    """A page of the inbox as the page shows it: ``limit`` entries, each with all of its members.

    Pages run over entry heads (a notification without a collapse key, or the
    newest of its key), so a group is whole on the page where its newest member
    is and never shows up again on a later one. Items come newest head first,
    each followed by its older members, as :func:`app.inbox.grouping.group_entries` wants them.
    """

    def shown(model):
        condition = and_(model.recipient_id == recipient_id, model.inbox_at.is_not(None), model.archived_at.is_(None))
        return and_(condition, model.read_at.is_(None)) if unread_only else condition

    newer = aliased(Notification)
    newer_in_group = exists(
        select(newer.id).where(
            shown(newer),
            newer.collapse_key == Notification.collapse_key,
            or_(
                newer.inbox_at > Notification.inbox_at,
                and_(newer.inbox_at == Notification.inbox_at, newer.id > Notification.id),
            ),
        )
    )
    heads_query = select(Notification).where(
        shown(Notification), or_(Notification.collapse_key.is_(None), not_(newer_in_group))
    )
    heads_query = _page_after(heads_query, cursor).order_by(Notification.inbox_at.desc(), Notification.id.desc())
    heads = _with_broadcasts(recipient_id, db.session.scalars(heads_query.limit(limit + 1)).all(), limit, cursor)
    next_cursor = encode_cursor(heads[limit - 1]) if len(heads) > limit else None
    heads = heads[:limit]
    keys = {head.collapse_key for head in heads if head.collapse_key}
    members: dict[str, list[Notification]] = {key: [] for key in keys}
    if keys:
        # The newest GROUP_LIMIT of each group (its head first), counted in SQL: a group of 10,000 likes loads 100.
        rank = (
            func.row_number()
            .over(
                partition_by=Notification.collapse_key, order_by=(Notification.inbox_at.desc(), Notification.id.desc())
            )
            .label("rank")
        )
        ranked = (
            select(Notification.id, rank).where(shown(Notification), Notification.collapse_key.in_(keys)).subquery()
        )
        for item in db.session.scalars(
            select(Notification)
            .join(ranked, ranked.c.id == Notification.id)
            .where(ranked.c.rank > 1, ranked.c.rank <= GROUP_LIMIT)
            .order_by(Notification.inbox_at.desc(), Notification.id.desc())
        ):
            members[item.collapse_key].append(item)
    items = []
    for head in heads:
        items.append(head)
        items.extend(members.get(head.collapse_key, []) if head.collapse_key else [])
    return items, next_cursor


def broadcast_copy(notification_id: str) -> Notification | None:
    """The notification row of a broadcast entry id, written now if the broadcast is pending for its reader;
    None for any other id, or when the broadcast does not target that reader."""
    parsed = broadcasts.parse_item_id(notification_id)
    if parsed is None:
        return None
    _materialise(parsed[1], [notification_id])
    db.session.commit()
    return db.session.get(Notification, notification_id)


def unread_count(recipient_id: int) -> int:
    stored = db.session.scalar(
        select(func.count()).select_from(Notification).where(_visible(recipient_id), Notification.read_at.is_(None))
    )
    return stored + len(_reader(recipient_id).pending)


def mark_read(notification: Notification) -> None:
    if notification.read_at is None:
        notification.read_at = utcnow()
        emit(webhook_events.read(notification.recipient_id, [notification.id]))
        db.session.commit()
    publish_to_user(
        notification.recipient_id, "read", {"ids": [notification.id], "unread": unread_count(notification.recipient_id)}
    )


def mark_all_read(recipient_id: int) -> int:
    _materialise(recipient_id, None)
    marked = (
        db.session.execute(
            update(Notification)
            .where(_visible(recipient_id), Notification.read_at.is_(None))
            .values(read_at=utcnow())
            .returning(Notification.id),
            execution_options={"synchronize_session": False},
        )
        .scalars()
        .all()
    )
    emit(webhook_events.read(recipient_id, marked))
    db.session.commit()
    publish_to_user(recipient_id, "read", {"all": True, "unread": 0})
    return len(marked)


def find_visible(recipient_id: int, ids: list[str]) -> list[Notification]:
    """Those of ``ids`` that are in this recipient's inbox; anyone else's ids simply match nothing."""
    if not ids:
        return []
    stored = list(
        db.session.scalars(select(Notification).where(_visible(recipient_id), Notification.id.in_(ids[:MAX_LIMIT])))
    )
    wanted = set(ids[:MAX_LIMIT]) - {n.id for n in stored}
    if not wanted or not any(broadcasts.parse_item_id(i) for i in wanted):
        return stored
    found = _reader(recipient_id)
    shown = broadcasts.views(found.person, [p for p in found.pending if p.id in wanted], utcnow())
    return stored + list(shown.values())


def mark_ids_read(recipient_id: int, ids: list[str]) -> int:
    """Mark several of this recipient's notifications read (a collapsed group) with one realtime event."""
    _materialise(recipient_id, ids[:MAX_LIMIT])
    marked = (
        db.session.execute(
            update(Notification)
            .where(_visible(recipient_id), Notification.read_at.is_(None), Notification.id.in_(ids[:MAX_LIMIT]))
            .values(read_at=utcnow())
            .returning(Notification.id),
            execution_options={"synchronize_session": False},
        )
        .scalars()
        .all()
    )
    emit(webhook_events.read(recipient_id, marked))
    db.session.commit()
    publish_to_user(recipient_id, "read", {"ids": ids[:MAX_LIMIT], "unread": unread_count(recipient_id)})
    return len(marked)


def archive(recipient_id: int, ids: list[str]) -> int:
    """Take notifications out of the inbox (kept for delivery history); other tabs hear it as a read change."""
    _materialise(recipient_id, ids[:MAX_LIMIT])
    result = db.session.execute(
        update(Notification)
        .where(_visible(recipient_id), Notification.id.in_(ids[:MAX_LIMIT]))
        .values(archived_at=utcnow())
    )
    db.session.commit()
    publish_to_user(recipient_id, "read", {"archived": ids[:MAX_LIMIT], "unread": unread_count(recipient_id)})
    return result.rowcount


def arrived_after(
    recipient_id: int, notification_id: str, overlap_seconds: float, limit: int
) -> list[Notification] | None:
    """What reached this inbox after ``notification_id`` did, oldest first, for replay on reconnect.

    None when the id is not in this recipient's inbox (unknown, archived, or
    someone else's): the caller cannot place the cursor and must resync. Two
    workers may commit out of ``inbox_at`` order, so the window starts
    ``overlap_seconds`` before the cursor; the page treats repeats as no-ops.
    """
    anchor = db.session.scalar(select(Notification).where(_visible(recipient_id), Notification.id == notification_id))
    pending = _reader(recipient_id).pending
    anchor = anchor or next((p for p in pending if p.id == notification_id), None)
    if anchor is None:
        return None
    since = anchor.inbox_at - timedelta(seconds=overlap_seconds)
    query = (
        select(Notification)
        .where(_visible(recipient_id), Notification.inbox_at >= since, Notification.id != anchor.id)
        .order_by(Notification.inbox_at, Notification.id)
        .limit(limit)
    )
    missed = [p for p in pending if p.inbox_at >= since and p.id != anchor.id]
    shown = broadcasts.views(_reader(recipient_id).person, missed, utcnow()) if missed else {}
    rows = [*db.session.scalars(query), *shown.values()]
    return sorted(rows, key=lambda n: (n.inbox_at, n.id))[:limit]


def record_click(notification_id: str, channel: str) -> bool:
    """Keep the first click on a notification's link (any channel); later ones change nothing. True when first."""
    first = (
        db.session.execute(
            update(Notification)
            .where(Notification.id == notification_id, Notification.clicked_at.is_(None))
            .values(clicked_at=utcnow(), clicked_channel=channel)
            .returning(Notification.recipient_id),
            execution_options={"synchronize_session": False},
        )
        .scalars()
        .all()
    )
    for recipient_id in first:
        emit(webhook_events.clicked(recipient_id, notification_id, channel))
    db.session.commit()
    return bool(first)
