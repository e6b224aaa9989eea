"""Creating and changing rules, with an audit entry for every change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, Rule, StaffUser, Template
from app.render_checks import audience_failure

EDITABLE = (
    "name",
    "enabled",
    "audience",
    "type",
    "category",
    "priority",
    "template_key",
    "channels",
    "window_start",
    "window_end",
    "every_days",
    "no_timezone_policy",
)
DEFAULT_AUDIENCE = {
    "all": [{"field": "attributes.balance", "op": "<", "field_value": "attributes.low_balance_threshold"}]
}


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


def enabling_problem(values: dict, rule_id: int | None, now: datetime) -> str | None:
    """Why an enabled rule may not be saved: its template (current version) fails to render for a sample of
    its audience on one of its channels, with the ``data`` a rule's notifications carry."""
    if not values["enabled"]:
        return None
    template = db.session.scalar(select(Template).where(Template.key == values["template_key"]))
    if template is None:
        return "The rule's template no longer exists."
    data = {"rule_id": rule_id or 0, "local_date": now.date().isoformat()}
    failure = audience_failure(
        template, template.current_version, values["audience"], list(values["channels"]), data, now
    )
    if failure is None:
        return None
    return f"{failure}. Fix the template, or save the rule disabled."


def save_rule(rule: Rule | None, values: dict, staff: StaffUser) -> Rule:
    """Create (``rule`` None) or update a rule from validated values and record who did it."""
    before = snapshot(rule) if rule is not None else None
    if rule is None:
        rule = Rule()
        db.session.add(rule)
    for name in EDITABLE:
        setattr(rule, name, values[name])
    db.session.flush()
    db.session.add(
        AuditEntry(
            staff_user_id=staff.id,
            actor=staff.email,
            action="rule.update" if before else "rule.create",
            target_type="rule",
            target_id=str(rule.id),
            before=before,
            after=snapshot(rule),
        )
    )
    db.session.commit()
    return rule
