"""Set-based writes that work on SQLite and PostgreSQL alike."""
from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db


def insert_ignoring_conflicts(model, rows: list[dict], conflict_columns: list[str]) -> int:
    """``INSERT ... ON CONFLICT (cols) DO NOTHING``: the unique key, not a read, decides. Returns rows inserted.

    One executemany: the statement compiles once and is cached (a multi-row
    VALUES clause is compiled afresh per call, about a second per 1000 rows).
    ``preserve_rowcount`` makes psycopg report the count (it answers -1 otherwise).
    """
    if not rows:
        return 0
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(model.__table__).on_conflict_do_nothing(index_elements=conflict_columns)
    result = db.session.connection().execute(statement, rows, execution_options={"preserve_rowcount": True})
    return result.rowcount
