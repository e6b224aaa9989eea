"""Console area: recipients, their opt-outs, the suppression list and erasure.

Everyone signed in may look; only admins change anything. Templates hide the
forms from marketers, and every write endpoint refuses them on its own
(``admin_required``), so a hand-made POST gets 403 too. Each change commits
together with its audit entry.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Regexp

from app.auth import admin_required
from app.console.blueprint import bp
from app.console.audit import Page, page_number, page_of, record_change
from app.console.routes import safe_next_path
from app.channels import address_fields, canonical_address, channel_names
from app.delivery.constants import ALL_CATEGORIES
from app.delivery.routing import MARKETING_CATEGORY
from app.extensions import db, htmx
from app.inbox.auth import inbox_path
from app.models import Delivery, Notification, Preference, Recipient, Suppression, Template
from app.models.types import utcnow
from app.recipients import erase_recipient, find_recipient

HISTORY_PER_PAGE = 10
# Channels whose address lives on the recipient row, so a suppression entry can be matched to them.
ADDRESS_CHANNELS = address_fields()
CHANNELS = channel_names()


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


# -- reads ---------------------------------------------------------------------------------------

def search_recipients(query: str, number: int) -> Page:
    """Prefix match on user id, email (case-insensitive) or phone; ordered by user id."""
    statement = select(Recipient).order_by(Recipient.external_id)
    if query:
        statement = statement.where(or_(
            Recipient.external_id.startswith(query, autoescape=True),
            func.lower(Recipient.email).startswith(query.lower(), autoescape=True),
            Recipient.phone.startswith(query, autoescape=True),
        ))
    return page_of(statement, number)


@dataclass(frozen=True)
class Switch:
    channel: str
    category: str
    enabled: bool
    explicit: bool  # a saved row, not the default


def preference_grid(recipient: Recipient, categories: list[str]) -> list[tuple[str, list[Switch]]]:
    """Rows of (category, one switch per channel), channel-wide ``*`` first; a switch nobody set reads as on."""
    saved = {(p.channel, p.category): p.enabled for p in recipient.preferences}
    return [
        (category, [Switch(channel, category, saved.get((channel, category), True), (channel, category) in saved)
                    for channel in CHANNELS])
        for category in [ALL_CATEGORIES, *categories]
    ]


def known_categories(recipient: Recipient) -> list[str]:
    """What can be switched: marketing (the blanket opt-out), template categories, received and saved ones."""
    received = select(Notification.category).where(Notification.recipient_id == recipient.id)
    templated = select(Template.category)
    found = set(db.session.scalars(received.union(templated)))
    found |= {p.category for p in recipient.preferences}
    found.add(MARKETING_CATEGORY)
    found.discard(ALL_CATEGORIES)
    return sorted(c for c in found if c)


def recipient_suppressions(recipient: Recipient) -> list[Suppression]:
    pairs = [(channel, getattr(recipient, field)) for channel, field in ADDRESS_CHANNELS.items()
             if getattr(recipient, field)]
    if not pairs:
        return []
    return list(db.session.scalars(select(Suppression).where(or_(
        *[(Suppression.channel == channel) & (Suppression.address == address) for channel, address in pairs]
    )).order_by(Suppression.id)))


def notification_history(recipient: Recipient, number: int) -> Page:
    """Newest first, each with its deliveries and their events loaded in two more queries."""
    statement = (select(Notification).where(Notification.recipient_id == recipient.id)
                 .options(selectinload(Notification.deliveries).selectinload(Delivery.events))
                 .order_by(Notification.created_at.desc(), Notification.id.desc()))
    return page_of(statement, number, per_page=HISTORY_PER_PAGE)


def recipient_or_404(user_id: str) -> Recipient:
    recipient = find_recipient(user_id)
    if recipient is None:
        abort(404, "No recipient with that user id.")
    return recipient


# -- writes --------------------------------------------------------------------------------------

def set_preference(recipient: Recipient, channel: str, category: str, enabled: bool, actor) -> None:
    row = db.session.get(Preference, (recipient.id, channel, category))
    before = None if row is None else {"channel": channel, "category": category, "enabled": row.enabled}
    if row is None:
        row = Preference(recipient_id=recipient.id, channel=channel, category=category, enabled=enabled)
        db.session.add(row)
    row.enabled = enabled
    row.updated_at = recipient.updated_at = utcnow()
    record_change(actor, "preference.set", "recipient", recipient.id, before,
                  {"channel": channel, "category": category, "enabled": enabled})
    db.session.commit()


def set_hard_stop(recipient: Recipient, enabled: bool, actor) -> None:
    before = {"hard_stop": recipient.hard_stop}
    recipient.hard_stop = enabled
    recipient.updated_at = utcnow()
    record_change(actor, "recipient.hard_stop", "recipient", recipient.id, before, {"hard_stop": enabled})
    db.session.commit()


def add_suppression(channel: str, address: str, reason: str, actor) -> Suppression | None:
    """The new entry, or None when the address is already suppressed on that channel."""
    address = canonical_address(channel, address)
    entry = Suppression(channel=channel, address=address, reason=reason, created_at=utcnow())
    db.session.add(entry)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return None
    record_change(actor, "suppression.add", "suppression", entry.id, None,
                  {"channel": channel, "address": address, "reason": reason})
    db.session.commit()
    return entry


def remove_suppression(suppression_id: int, actor) -> bool:
    entry = db.session.get(Suppression, suppression_id)
    if entry is None:
        return False
    record_change(actor, "suppression.remove", "suppression", entry.id,
                  {"channel": entry.channel, "address": entry.address, "reason": entry.reason}, None)
    db.session.delete(entry)
    db.session.commit()
    return True


# -- views ---------------------------------------------------------------------------------------

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
        return render_template("console/recipients/_preferences.html", recipient=recipient,
                               grid=preference_grid(recipient, known_categories(recipient)))
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
    flash("Hard stop is on: nothing will be sent to this recipient." if recipient.hard_stop
          else "Hard stop is off.", "info")
    return redirect(url_for("console.recipient_page", user_id=recipient.external_id))


@bp.post("/recipients/<user_id>/open-inbox")
@admin_required
def recipient_open_inbox(user_id: str):
    """Sign this browser in to the recipient's own inbox (not read-only: what the admin reads is marked read),
    through the same signed link the host product gives the user; the audit log records who opened it."""
    recipient = recipient_or_404(user_id)
    record_change(current_user, "recipient.open_inbox", "recipient", recipient.id, None,
                  {"user_id": recipient.external_id})
    db.session.commit()
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
    statement = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if query:
        statement = statement.where(func.lower(Suppression.address).startswith(query.lower(), autoescape=True))
    entries = page_of(statement, page_number(request.args.get("page")))
    return render_template("console/recipients/suppressions.html", entries=entries, query=query,
                           form=SuppressionForm(formdata=None))


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
    statement = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    return render_template("console/recipients/suppressions.html", entries=page_of(statement, 1), query="",
                           form=form), 400


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
