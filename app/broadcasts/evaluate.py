"""Every live broadcast's audience filter, evaluated for one reader in one query.

The filters are compiled by :func:`app.audiences.filters.compile_filter` (the one evaluator campaigns and rules
use), one boolean column each over the reader's row. With 100 broadcasts, building those expressions, and
then rendering the statement's SQL per execution, costs far more than the database spends running it. So the
SQL text is rendered once per set of live broadcasts (and per minute when a filter reads the clock) with its
values inline, and each read only appends the reader's id: no expression building, no parameter expansion,
and nothing for the driver to parse. A filter whose values cannot be rendered inline runs as a bound
statement instead, also built once.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Integer, and_, bindparam, exists, not_, select
from sqlalchemy.exc import CompileError

from app.audiences.filters import compile_filter
from app.extensions import db
from app.models import Broadcast, Notification, Recipient

_KEPT = 32
_BUILT: dict[tuple, tuple[str | None, object]] = {}


def audience_hits(recipient_id: int, candidates: list, now: datetime) -> list[bool] | None:
    """For each of ``candidates`` (``id``, ``campaign_id``, ``audience_filter``): does its audience hold the reader
    now, having existed when it launched, with no copy of it yet? None when there is no such recipient."""
    sql, statement = _built(candidates, now)
    if sql is not None:
        row = db.session.connection().exec_driver_sql(f"{sql} WHERE recipients.id = {int(recipient_id)}").first()
    else:
        row = db.session.execute(statement, {"reader": recipient_id}).first()
    return None if row is None else [bool(hit) for hit in row]


def _built(candidates: list, now: datetime) -> tuple[str | None, object]:
    bind = db.session.get_bind()
    # The filters' text is in the key, not just row ids: an id can come back (SQLite reuses the highest rowid).
    filters = tuple((b.id, b.campaign_id, json.dumps(b.audience_filter, sort_keys=True)) for b in candidates)
    clock = any("last_seen_at" in text for _id, _campaign, text in filters)
    key = (bind.dialect.name, filters, now.replace(second=0, microsecond=0) if clock else None)
    found = _BUILT.get(key)
    if found is None:
        found = _build(candidates, now, bind.dialect)
        if len(_BUILT) >= _KEPT:
            _BUILT.clear()
        _BUILT[key] = found
    return found


def _build(candidates: list, now: datetime, dialect) -> tuple[str | None, object]:
    tests = []
    for n, broadcast in enumerate(candidates):
        launched = select(Broadcast.launched_at).where(Broadcast.id == broadcast.id).scalar_subquery()
        where = compile_filter(broadcast.audience_filter, dialect.name, now)
        copied = exists(
            select(Notification.id).where(
                Notification.campaign_id == broadcast.campaign_id, Notification.recipient_id == Recipient.id
            )
        )
        tests.append(and_(where, Recipient.created_at <= launched, not_(copied)).label(f"b{n}"))
    columns = select(*tests).select_from(Recipient)
    statement = columns.where(Recipient.id == bindparam("reader", type_=Integer))
    try:
        sql = str(columns.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    except (CompileError, NotImplementedError):
        sql = None
    return sql, statement
