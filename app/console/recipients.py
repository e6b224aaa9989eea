"""Console area: recipients, their opt-outs, the suppression list and erasure.

Everyone signed in may look; only admins change anything. Templates hide the
forms from marketers, and every write endpoint refuses them on its own
(``admin_required``), so a hand-made POST gets 403 too. Each change commits
together with its audit entry (app/console/recipients_store.py does the work).
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Regexp

from app.auth import admin_required
from app.console.audit import page_number
from app.console.blueprint import bp
from app.console.recipients_store import (
    ADDRESS_CHANNELS,
    CHANNELS,
    add_suppression,
    known_categories,
    notification_history,
    preference_grid,
    recipient_suppressions,
    record_inbox_opened,
    remove_suppression,
    search_recipients,
    search_suppressions,
    set_hard_stop,
    set_preference,
    workflow_runs,
)
from app.console.routes import safe_next_path
from app.extensions import htmx
from app.inbox.auth import inbox_path
from app.models import Recipient
from app.recipients import erase_recipient, find_recipient

# -- forms ---------------------------------------------------------------------------------------


class PreferenceForm(FlaskForm):
    channel = SelectField(choices=[(c, c) for c in CHANNELS], validate_choice=True)
    category = StringField(validators=[DataRequired(), Length(max=64), Regexp(r"^(\*|[A-Za-z0-9_.:-]+)$")])
    enabled = SelectField(choices=[("1", "on"), ("0", "off")])


class HardStopForm(FlaskForm):
    enabled = SelectField(choices=[("1", "on"), ("0", "off")])


class SuppressionForm(FlaskForm):
    channel = SelectField("Channel", choices=[(c, c) for c in CHANNELS])
    address = StringField("Address", validators=[DataRequired("Enter the address to suppress."), Length(max=320)])
    reason = StringField("Reason", validators=[DataRequired("Say why, for whoever reads this later."), Length(max=255)])


class EraseForm(FlaskForm):
    confirm = StringField("Type the user id to confirm", validators=[DataRequired("Type the user id to confirm.")])


# -- views ---------------------------------------------------------------------------------------


def recipient_or_404(user_id: str) -> Recipient:
    recipient = find_recipient(user_id)
    if recipient is None:
        abort(404, "No recipient with that user id.")
    return recipient


@bp.get("/recipients")
@login_required
def recipients():
    query = request.args.get("q", "").strip()[:320]
    results = search_recipients(query, page_number(request.args.get("page")))
    template = "console/recipients/_results.html" if htmx else "console/recipients/search.html"
    return render_template(template, query=query, results=results)


def _render_recipient(recipient: Recipient):
    history = notification_history(recipient, page_number(request.args.get("page")))
    if htmx and request.method == "GET":
        return render_template("console/recipients/_history.html", recipient=recipient, history=history)
    return render_template(
        "console/recipients/recipient.html",
        recipient=recipient,
        grid=preference_grid(recipient, known_categories(recipient)),
        suppressions=recipient_suppressions(recipient),
        suppression_form=SuppressionForm(formdata=None),
        history=history,
        workflow_runs=workflow_runs(recipient),
        address_channels=ADDRESS_CHANNELS,
    )


@bp.get("/recipients/<user_id>")
@login_required
def recipient_page(user_id: str):
    return _render_recipient(recipient_or_404(user_id))


@bp.post("/recipients/<user_id>/preferences")
@admin_required
def recipient_preference(user_id: str):
    recipient = recipient_or_404(user_id)
    form = PreferenceForm()
    if not form.validate():
        abort(400, "That preference switch does not exist.")
    set_preference(recipient, form.channel.data, form.category.data, form.enabled.data == "1", current_user)
    if htmx:
        return render_template(
            "console/recipients/_preferences.html",
            recipient=recipient,
            grid=preference_grid(recipient, known_categories(recipient)),
        )
    flash(f"{form.channel.data} / {form.category.data} is now {'on' if form.enabled.data == '1' else 'off'}.", "info")
    return redirect(url_for("console.recipient_page", user_id=recipient.external_id))


@bp.post("/recipients/<user_id>/hard-stop")
@admin_required
def recipient_hard_stop(user_id: str):
    recipient = recipient_or_404(user_id)
    form = HardStopForm()
    if not form.validate():
        abort(400, "Send the hard-stop as on or off.")
    set_hard_stop(recipient, form.enabled.data == "1", current_user)
    flash(
        "Hard stop is on: nothing will be sent to this recipient." if recipient.hard_stop else "Hard stop is off.",
        "info",
    )
    return redirect(url_for("console.recipient_page", user_id=recipient.external_id))


@bp.post("/recipients/<user_id>/open-inbox")
@admin_required
def recipient_open_inbox(user_id: str):
    """Sign this browser in to the recipient's own inbox (not read-only: what the admin reads is marked read),
    through the same signed link the host product gives the user; the audit log records who opened it."""
    recipient = recipient_or_404(user_id)
    record_inbox_opened(recipient, current_user)
    return redirect(inbox_path(current_app.config["INBOX_SECRET"], recipient.external_id), code=303)


@bp.route("/recipients/<user_id>/erase", methods=["GET", "POST"])
@admin_required
def recipient_erase(user_id: str):
    recipient = recipient_or_404(user_id)
    form = EraseForm()
    if form.validate_on_submit():
        if form.confirm.data.strip() != recipient.external_id:
            form.confirm.errors.append("That is not this recipient's user id.")
        else:
            erase_recipient(recipient, current_user.email)
            flash(f"Recipient #{recipient.id} and everything about them was erased.", "info")
            return redirect(url_for("console.recipients"))
    status = 400 if form.errors else 200
    return render_template("console/recipients/erase.html", recipient=recipient, form=form), status


@bp.get("/suppressions")
@login_required
def suppressions():
    query = request.args.get("q", "").strip()[:320]
    entries = search_suppressions(query, page_number(request.args.get("page")))
    return render_template(
        "console/recipients/suppressions.html", entries=entries, query=query, form=SuppressionForm(formdata=None)
    )


@bp.post("/suppressions")
@admin_required
def suppression_add():
    form = SuppressionForm()
    back = request.form.get("back", "")
    if form.validate():
        entry = add_suppression(form.channel.data, form.address.data.strip(), form.reason.data.strip(), current_user)
        if entry is not None:
            flash(f"{entry.address} will not be contacted on {entry.channel}.", "info")
            return redirect(_safe_back(back) or url_for("console.suppressions"))
        form.address.errors.append("This address is already suppressed on that channel.")
    return render_template(
        "console/recipients/suppressions.html", entries=search_suppressions("", 1), query="", form=form
    ), 400


@bp.post("/suppressions/<int:suppression_id>/delete")
@admin_required
def suppression_remove(suppression_id: int):
    if not remove_suppression(suppression_id, current_user):
        abort(404, "That suppression entry no longer exists.")
    flash("The suppression entry was removed.", "info")
    return redirect(_safe_back(request.form.get("back", "")) or url_for("console.suppressions"))


def _safe_back(target: str) -> str | None:
    """Return to the console page the form was on, never elsewhere."""
    path = safe_next_path(target)
    return path if path and path.startswith("/console/") else None
