"""The audit log: one helper every console area calls on each admin change, and the page that reads it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from flask import render_template, request
from sqlalchemy import func, select

from app.auth import admin_required
from app.console.blueprint import bp
from app.extensions import db, htmx
from app.models import AuditEntry, StaffUser
from app.models.types import utcnow

PER_PAGE = 25


def _jsonable(value: Any) -> Any:
    """Before/after snapshots go into a JSON column: dates become ISO strings, containers are walked."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return value


def record_change(
    actor: StaffUser | str, action: str, target_type: str, target_id: Any, before: dict | None, after: dict | None
) -> AuditEntry:
    """Add an audit entry to the session; the caller's commit stores it with the change it describes.

    Committing both together is the point: a change is never stored without its entry, nor an
    entry for a change that rolled back. ``actor`` is the signed-in staff user (or, from jobs and
    the command line, a plain name).
    """
    entry = AuditEntry(
        staff_user_id=getattr(actor, "id", None),
        actor=getattr(actor, "email", None) or str(actor),
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        before=_jsonable(before),
        after=_jsonable(after),
        created_at=utcnow(),
    )
    db.session.add(entry)
    return entry


# -- paging (shared by the console's long lists) --------------------------------------------------


@dataclass(frozen=True)
class Page:
    items: list
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def page_number(raw: str | None) -> int:
    """``?page=`` as a positive int; anything else is page 1 (a bad link is not an error page)."""
    try:
        number = int(raw or 1)
    except ValueError:
        return 1
    return min(max(number, 1), 100_000)


def page_of(statement, number: int, per_page: int = PER_PAGE, scalars: bool = True) -> Page:
    """One page of an ordered statement; reads one row more than shown to know whether a next page exists."""
    query = statement.limit(per_page + 1).offset((number - 1) * per_page)
    rows = list(db.session.scalars(query) if scalars else db.session.execute(query))
    return Page(rows[:per_page], number, len(rows) > per_page)


# -- the audit log page ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    target_type: str = ""
    target_id: str = ""

    @classmethod
    def from_args(cls, args) -> AuditFilter:
        return cls(*(args.get(name, "").strip()[:320] for name in ("actor", "target_type", "target_id")))

    def as_args(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (("actor", self.actor), ("target_type", self.target_type), ("target_id", self.target_id))
            if v
        }


def audit_entries(filters: AuditFilter, number: int) -> Page:
    """Newest first; the actor matches by prefix, case-insensitively, the target exactly."""
    statement = select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
    if filters.actor:
        statement = statement.where(func.lower(AuditEntry.actor).startswith(filters.actor.lower(), autoescape=True))
    if filters.target_type:
        statement = statement.where(AuditEntry.target_type == filters.target_type)
    if filters.target_id:
        statement = statement.where(AuditEntry.target_id == filters.target_id)
    return page_of(statement, number)


@bp.get("/audit")
@admin_required
def audit_log():
    filters = AuditFilter.from_args(request.args)
    entries = audit_entries(filters, page_number(request.args.get("page")))
    template = "console/operations/_audit_rows.html" if htmx else "console/operations/audit.html"
    return render_template(template, entries=entries, filters=filters)
