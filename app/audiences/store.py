"""Saved audiences: the queries other areas (campaigns, rules) reuse, counts, samples, saving.

Membership is always computed in SQL from the filter (app/audiences/filters.py);
recipients are never loaded into Python to be filtered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError

from app.audiences.filters import compile_filter, validate_filter
from app.extensions import db
from app.models import Audience, AuditEntry, Recipient, StaffUser

SAMPLE_SIZE = 20


class InvalidAudience(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def audience_where(audience_or_filter: Audience | dict, now: datetime):
    """The WHERE clause over ``recipients`` for a saved audience or a filter tree (validated here)."""
    tree = audience_or_filter.filter if isinstance(audience_or_filter, Audience) else audience_or_filter
    problems = validate_filter(tree)
    if problems:
        raise InvalidAudience(problems)
    return compile_filter(tree, _dialect(), now)


def audience_query(audience_or_filter: Audience | dict, now: datetime) -> Select:
    """``SELECT recipients.id WHERE <filter>``: join it, page it by id, or count it."""
    return select(Recipient.id).where(audience_where(audience_or_filter, now))


@dataclass(frozen=True)
class Reach:
    count: int
    sample: list[Recipient]


def count_and_sample(tree: dict, now: datetime, size: int = SAMPLE_SIZE) -> Reach:
    """Exactly two queries: how many match, and the first ``size`` of them by id."""
    where = audience_where(tree, now)
    count = db.session.scalar(select(func.count()).select_from(Recipient).where(where)) or 0
    sample = list(db.session.scalars(select(Recipient).where(where).order_by(Recipient.id).limit(size)))
    return Reach(int(count), sample)


def save_audience(audience: Audience | None, name: str, tree: dict, staff: StaffUser) -> Audience:
    """Create or update a saved audience and write the audit entry; a taken name raises ValueError."""
    problems = validate_filter(tree)
    if problems:
        raise InvalidAudience(problems)
    before = None if audience is None else {"name": audience.name, "filter": audience.filter}
    if audience is None:
        audience = Audience(name=name, filter=tree, created_by=staff.id)
        db.session.add(audience)
    else:
        audience.name, audience.filter = name, tree
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise ValueError(f"An audience named {name!r} already exists.") from None
    db.session.add(
        AuditEntry(
            staff_user_id=staff.id,
            actor=staff.email,
            action="audience.create" if before is None else "audience.update",
            target_type="audience",
            target_id=str(audience.id),
            before=before,
            after={"name": name, "filter": tree},
        )
    )
    db.session.commit()
    return audience
