"""Creating and changing rules, with an audit entry for every change."""
from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, Rule, StaffUser

EDITABLE = ("name", "enabled", "audience", "type", "category", "priority", "template_key", "channels",
            "window_start", "window_end", "every_days", "no_timezone_policy")
DEFAULT_AUDIENCE = {"all": [{"field": "attributes.balance", "op": "<", "field_value": "attributes.low_balance_threshold"}]}


def snapshot(rule: Rule) -> dict:
    """The rule as JSON, for the audit log's before/after."""
    values = {name: getattr(rule, name) for name in EDITABLE}
    values["window_start"] = rule.window_start.strftime("%H:%M")
    values["window_end"] = rule.window_end.strftime("%H:%M")
    return values


def name_taken(name: str, rule_id: int | None) -> bool:
    query = select(Rule.id).where(func.lower(Rule.name) == name.strip().lower())
    if rule_id is not None:
        query = query.where(Rule.id != rule_id)
    return db.session.scalar(query) is not None


def save_rule(rule: Rule | None, values: dict, staff: StaffUser) -> Rule:
    """Create (``rule`` None) or update a rule from validated values and record who did it."""
    before = snapshot(rule) if rule is not None else None
    if rule is None:
        rule = Rule()
        db.session.add(rule)
    for name in EDITABLE:
        setattr(rule, name, values[name])
    db.session.flush()
    db.session.add(AuditEntry(staff_user_id=staff.id, actor=staff.email, action="rule.update" if before else "rule.create",
                              target_type="rule", target_id=str(rule.id), before=before, after=snapshot(rule)))
    db.session.commit()
    return rule
