"""Set-based writes that work on SQLite and PostgreSQL alike."""
from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db


def insert_ignoring_conflicts(model, rows: list[dict], conflict_columns: list[str]) -> int:
    """``INSERT ... ON CONFLICT (cols) DO NOTHING``: the unique key, not a read, decides.

    Returns how many rows were really inserted, counted from ``RETURNING``:
    a driver's rowcount is -1 for multi-row inserts on PostgreSQL.
    """
    if not rows:
        return 0
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    key = model.__table__.c[conflict_columns[0]]
    statement = dialect.insert(model).values(rows).on_conflict_do_nothing(index_elements=conflict_columns).returning(key)
    return len(db.session.execute(statement).all())
