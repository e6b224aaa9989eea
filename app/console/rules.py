"""Console area: daily rules (list, create, edit, dry-run). Marketers and admins."""

from __future__ import annotations

import json
from datetime import time

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, IntegerField, SelectField, SelectMultipleField, StringField, TextAreaField, TimeField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Regexp, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from app.audiences.filters import validate_filter
from app.channels import labels
from app.console.blueprint import bp
from app.delivery.constants import NOTIFICATION_TYPES, PRIORITIES
from app.extensions import db, htmx
from app.models import Rule, RuleSend, Template
from app.models.types import utcnow
from app.rules.definitions import DEFAULT_AUDIENCE, enabling_problem, name_taken, save_rule
from app.rules.evaluate import dry_run
from app.rules.windows import POLICIES


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class RuleForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("Give the rule a name."), Length(max=120)])
    enabled = BooleanField("Enabled", default=True)
    audience = TextAreaField("Audience filter (JSON)", validators=[DataRequired("Describe who receives it.")])
    type = SelectField("Type", choices=[(t, t) for t in NOTIFICATION_TYPES], default="transactional")
    category = StringField(
        "Category",
        default="low_balance",
        validators=[
            DataRequired("Name the category."),
            Regexp(r"^[a-z0-9][a-z0-9_.-]{0,63}$", message="Lowercase letters, digits, _ . - only."),
        ],
    )
    priority = SelectField("Priority", choices=[(p, p) for p in PRIORITIES], default="normal")
    template_key = SelectField("Template", validate_choice=False)
    channels = CheckboxesField("Channels", choices=list(labels().items()), default=["in_app", "push"])
    window_start = TimeField("Send from (local)", default=time(9), validators=[InputRequired("Give a start time.")])
    window_end = TimeField("Send until (local)", default=time(19), validators=[InputRequired("Give an end time.")])
    every_days = IntegerField(
        "At most once every N local days",
        default=1,
        validators=[InputRequired("Give a number of days."), NumberRange(1, 365, "From 1 to 365 days.")],
    )
    no_timezone_policy = SelectField(
        "Recipients without a time zone",
        choices=[("utc", "Use the UTC window (nobody woken)"), ("country", "Infer from attributes.country")],
        default="utc",
    )

    def __init__(self, *args, rule_id: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.rule_id = rule_id
        self.template_key.choices = [
            (t.key, f"{t.name} ({t.key})") for t in db.session.scalars(select(Template).order_by(Template.name))
        ]

    def validate_name(self, field):
        if name_taken(field.data or "", self.rule_id):
            raise ValidationError("Another rule has this name.")

    def validate_audience(self, field):
        try:
            tree = json.loads(field.data or "")
        except ValueError as error:
            raise ValidationError(f"Not valid JSON: {error}") from None
        problems = validate_filter(tree)
        if problems:
            raise ValidationError("; ".join(problems[:3]))
        field.tree = tree

    def validate_template_key(self, field):
        if field.data not in {key for key, _label in field.choices}:
            raise ValidationError("Choose a template (create one first if the list is empty).")

    def validate_channels(self, field):
        if not field.data:
            raise ValidationError("Choose at least one channel.")

    def validate_window_end(self, field):
        if self.window_start.data and field.data and field.data <= self.window_start.data:
            raise ValidationError("The window must end after it starts, on the same day.")

    def validate_no_timezone_policy(self, field):
        if field.data not in POLICIES:
            raise ValidationError("Choose a policy.")

    def values(self) -> dict:
        return {
            "name": self.name.data.strip(),
            "enabled": self.enabled.data,
            "audience": self.audience.tree,
            "type": self.type.data,
            "category": self.category.data,
            "priority": self.priority.data,
            "template_key": self.template_key.data,
            "channels": self.channels.data,
            "window_start": self.window_start.data,
            "window_end": self.window_end.data,
            "every_days": self.every_days.data,
            "no_timezone_policy": self.no_timezone_policy.data,
        }


def _may_enable(form: RuleForm, rule_id: int | None) -> bool:
    """An enabled rule must render for a sample of its audience; otherwise the Enabled box says why."""
    problem = enabling_problem(form.values(), rule_id, utcnow())
    if problem:
        form.enabled.errors = [*form.enabled.errors, problem]
    return problem is None


def rule_or_404(rule_id: int) -> Rule:
    rule = db.session.get(Rule, rule_id)
    if rule is None:
        abort(404, "No such rule.")
    return rule


@bp.get("/rules")
@login_required
def rules_list():
    rules = db.session.scalars(select(Rule).order_by(Rule.name)).all()
    return render_template("console/rules/list.html", rules=rules)


@bp.route("/rules/new", methods=["GET", "POST"])
@login_required
def rules_new():
    form = RuleForm()
    if not form.is_submitted():
        form.audience.data = json.dumps(DEFAULT_AUDIENCE, indent=2)
    if form.validate_on_submit() and _may_enable(form, None):
        rule = save_rule(None, form.values(), current_user)
        flash(f"Rule “{rule.name}” created.", "info")
        return redirect(url_for("console.rules_edit", rule_id=rule.id))
    return render_template("console/rules/form.html", form=form, rule=None), 422 if form.errors else 200


@bp.route("/rules/<int:rule_id>", methods=["GET", "POST"])
@login_required
def rules_edit(rule_id: int):
    rule = rule_or_404(rule_id)
    form = RuleForm(obj=rule, rule_id=rule.id)
    if not form.is_submitted():
        form.audience.data = json.dumps(rule.audience, indent=2)
    if form.validate_on_submit() and _may_enable(form, rule.id):
        save_rule(rule, form.values(), current_user)
        flash(f"Rule “{rule.name}” saved.", "info")
        return redirect(url_for("console.rules_edit", rule_id=rule.id))
    sends = db.session.execute(
        select(RuleSend.status, db.func.count()).where(RuleSend.rule_id == rule.id).group_by(RuleSend.status)
    ).all()
    return render_template(
        "console/rules/form.html", form=form, rule=rule, sends=dict(sends)
    ), 422 if form.errors else 200


@bp.post("/rules/<int:rule_id>/dry-run")
@login_required
def rules_dry_run(rule_id: int):
    rule = rule_or_404(rule_id)
    result = dry_run(rule, utcnow())
    if htmx:
        return render_template("console/rules/_dry_run.html", result=result, rule=rule)
    form = RuleForm(obj=rule, rule_id=rule.id, formdata=None)
    form.audience.data = json.dumps(rule.audience, indent=2)
    return render_template("console/rules/form.html", form=form, rule=rule, result=result, sends={})
