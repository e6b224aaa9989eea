"""Set-based writes of recipient attributes: one UPDATE for a PATCH, one upsert per chunk for a batch.

Merging happens in SQL (``jsonb ||`` on PostgreSQL, ``json_patch`` on
SQLite), never read-modify-write in Python, so two concurrent updates of
different keys both land.
"""

from __future__ import annotations

import json

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB

from app.extensions import db
from app.models import Recipient
from app.models.types import utcnow
from app.rules.schemas import BatchUser

CHUNK = 2000
OPTIONAL_FIELDS = ("email", "phone", "timezone", "locale")


def _postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def merged(current, patch):
    """SQL: ``current`` with ``patch``'s keys set (values are flat, so both dialects agree), nulls dropped."""
    if _postgres():
        return func.jsonb_strip_nulls(current.op("||")(patch))
    return func.json_patch(current, patch)


def patch_attributes(external_id: str, attributes: dict) -> Recipient | None:
    """Merge ``attributes`` into one recipient's (null deletes a key). None if there is no such recipient."""
    patch = bindparam("patch", attributes, type_=JSONB) if _postgres() else json.dumps(attributes)
    now = utcnow()
    updated = db.session.execute(
        update(Recipient)
        .where(Recipient.external_id == external_id)
        .values(attributes=merged(Recipient.attributes, patch), updated_at=now)
        .returning(Recipient.id)
    ).scalar()
    db.session.commit()
    return db.session.get(Recipient, updated, populate_existing=True) if updated is not None else None


def duplicate_user_ids(users: list[BatchUser]) -> list[dict]:
    """A user named twice in one batch is an error: which of the two should win is the caller's to say."""
    first: dict[str, int] = {}
    problems = []
    for index, user in enumerate(users):
        if user.user_id in first:
            problems.append(
                {
                    "field": f"users.{index}.user_id",
                    "message": f"user {user.user_id!r} already appears at index {first[user.user_id]}",
                }
            )
        else:
            first[user.user_id] = index
    return problems


def _delete_keys(ids_by_keys: dict[tuple[str, ...], list[str]]) -> None:
    for keys, external_ids in ids_by_keys.items():
        if _postgres():
            value = Recipient.attributes.op("-")(bindparam("keys", list(keys), type_=postgresql.ARRAY(db.String)))
        else:
            value = func.json_remove(Recipient.attributes, *[f'$."{k}"' for k in keys])
        db.session.execute(update(Recipient).where(Recipient.external_id.in_(external_ids)).values(attributes=value))


def upsert_users(users: list[BatchUser]) -> tuple[int, int]:
    """Create or update every user in one transaction: one INSERT .. ON CONFLICT (external_id) DO UPDATE per chunk
    and shape. Only the fields a user names change; attributes merge. Returns (created, updated)."""
    now = utcnow()
    dialect = postgresql if _postgres() else sqlite
    created = 0
    for start in range(0, len(users), CHUNK):
        chunk = users[start : start + CHUNK]
        external_ids = [u.user_id for u in chunk]
        existing = len(db.session.scalars(select(Recipient.id).where(Recipient.external_id.in_(external_ids))).all())
        created += len(chunk) - existing
        deletions: dict[tuple[str, ...], list[str]] = {}
        shapes: dict[tuple[str, ...], list[dict]] = {}
        for user in chunk:
            given = tuple(name for name in OPTIONAL_FIELDS if name in user.model_fields_set)
            attributes = user.attributes or {}
            nulls = tuple(sorted(k for k, v in attributes.items() if v is None))
            if nulls:
                deletions.setdefault(nulls, []).append(user.user_id)
            row = {
                "external_id": user.user_id,
                "attributes": {k: v for k, v in attributes.items() if v is not None},
                "email": user.email,
                "phone": user.phone,
                "timezone": user.timezone,
                "locale": user.locale or "en",
                "hard_stop": False,
                "created_at": now,
                "updated_at": now,
            }
            shapes.setdefault(given, []).append(row)
        _delete_keys(deletions)
        for given, rows in shapes.items():
            statement = dialect.insert(Recipient.__table__)
            changes = {name: statement.excluded[name] for name in given}
            changes["attributes"] = merged(Recipient.__table__.c.attributes, statement.excluded.attributes)
            changes["updated_at"] = statement.excluded.updated_at
            # executemany of one compiled statement: the driver batches it into multi-row INSERTs.
            db.session.connection().execute(
                statement.on_conflict_do_update(index_elements=["external_id"], set_=changes), rows
            )
    db.session.commit()
    return created, len(users) - created
