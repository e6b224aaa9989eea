"""Console area: operations (admins only).

The delivery log answers "what happened to notification Y?"; the dead-letter
list lets staff send failed deliveries again or put them aside; the health
page shows queues and providers; API keys are created, limited and revoked
here. The work is done in app/console/operations_store.py; these views read
the request, call it and render.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from app.api.scopes import DEFAULT_SCOPES, SCOPES
from app.auth import admin_required
from app.console.audit import page_number
from app.console.blueprint import bp
from app.console.new_api_key import show_new_key
from app.console.operations_store import (
    api_keys,
    change_rate_limit,
    create_key,
    dead_letters,
    discard_dead_letter,
    find_notifications,
    load_notification,
    notification_steps,
    providers_or_none,
    queues_or_none,
    retry_all_dead_letters,
    retry_dead_letter,
    revoke_key,
)
from app.extensions import db, htmx
from app.models import ApiKey, Recipient
from app.settings_values import check_rate_limit

# -- forms ---------------------------------------------------------------------------------------


def _rate_limit_validator(_form, field) -> None:
    try:
        field.data = check_rate_limit(field.data or "")
    except ValueError as error:
        raise ValidationError(str(error)) from None


class ApiKeyForm(FlaskForm):
    name = StringField(
        "Name", validators=[DataRequired("Name the key after the service that will use it."), Length(max=255)]
    )
    rate_limit = StringField(
        "Rate limit",
        default=lambda: current_app.config["API_RATE_LIMIT"],
        validators=[DataRequired("Give a rate limit."), Length(max=64), _rate_limit_validator],
    )
    scopes = SelectMultipleField(
        "Scopes",
        choices=[(name, f"{name} — {meaning}") for name, meaning in SCOPES.items()],
        default=list(DEFAULT_SCOPES),
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validators=[DataRequired("Choose at least one scope.")],
    )


class RateLimitForm(FlaskForm):
    rate_limit = StringField(
        "Rate limit", validators=[DataRequired("Give a rate limit."), Length(max=64), _rate_limit_validator]
    )


# -- views -----------------------------------------------------------------------------------------


@bp.get("/operations")
@admin_required
def operations():
    """The delivery log: search by notification id, user id or idempotency key."""
    query = request.args.get("q", "").strip()[:255]
    results = find_notifications(query, page_number(request.args.get("page"))) if query else None
    if (
        results is not None
        and not htmx
        and results.number == 1
        and len(results.items) == 1
        and results.items[0].id == query
    ):
        return redirect(url_for("console.notification_timeline", notification_id=query))
    template = "console/operations/_log_results.html" if htmx else "console/operations/log.html"
    return render_template(template, query=query, results=results)


@bp.get("/operations/notifications/<notification_id>")
@admin_required
def notification_timeline(notification_id: str):
    notification = load_notification(notification_id)
    if notification is None:
        abort(404, "No notification with that id (it may have been erased with its recipient).")
    recipient = db.session.get(Recipient, notification.recipient_id)
    return render_template(
        "console/operations/timeline.html",
        notification=notification,
        recipient=recipient,
        steps=notification_steps(notification),
    )


@bp.get("/operations/dead-letters")
@admin_required
def dead_letter_list():
    entries = dead_letters(page_number(request.args.get("page")))
    return render_template("console/operations/dead_letters.html", entries=entries, form=FlaskForm())


@bp.post("/operations/dead-letters/<int:delivery_id>/retry")
@admin_required
def dead_letter_retry(delivery_id: int):
    if retry_dead_letter(delivery_id, current_user):
        flash(f"Delivery {delivery_id} is queued to be sent again.", "info")
    else:
        flash(f"Delivery {delivery_id} is no longer a dead letter; nothing was done.", "error")
    return redirect(url_for("console.dead_letter_list"))


@bp.post("/operations/dead-letters/retry-all")
@admin_required
def dead_letter_retry_all():
    count = retry_all_dead_letters(current_user)
    flash(f"{count} dead letters are queued to be sent again.", "info")
    return redirect(url_for("console.dead_letter_list"))


@bp.post("/operations/dead-letters/<int:delivery_id>/discard")
@admin_required
def dead_letter_discard(delivery_id: int):
    if discard_dead_letter(delivery_id, current_user):
        flash(f"Delivery {delivery_id} was discarded.", "info")
    else:
        flash(f"Delivery {delivery_id} is no longer a dead letter; nothing was done.", "error")
    return redirect(url_for("console.dead_letter_list"))


@bp.get("/operations/health")
@admin_required
def health_page():
    return render_template("console/operations/health.html", queues=queues_or_none(), providers=providers_or_none())


def _render_keys(form: ApiKeyForm, status: int = 200, limit_forms: dict | None = None):
    keys = api_keys(page_number(request.args.get("page")))
    forms = {k.id: RateLimitForm(formdata=None, rate_limit=k.rate_limit) for k in keys.items}
    forms.update(limit_forms or {})
    return render_template("console/operations/api_keys.html", keys=keys, form=form, limit_forms=forms), status


@bp.get("/operations/api-keys")
@admin_required
def api_key_list():
    return _render_keys(ApiKeyForm(formdata=None))


@bp.post("/operations/api-keys")
@admin_required
def api_key_create():
    form = ApiKeyForm()
    if not form.validate():
        return _render_keys(form, 400)
    return show_new_key(*create_key(form.name.data.strip(), form.rate_limit.data, current_user, form.scopes.data))


def _key_or_404(key_id: int) -> ApiKey:
    api_key = db.session.get(ApiKey, key_id)
    if api_key is None:
        abort(404, "No API key with that id.")
    return api_key


@bp.post("/operations/api-keys/<int:key_id>/revoke")
@admin_required
def api_key_revoke(key_id: int):
    api_key = _key_or_404(key_id)
    if revoke_key(api_key, current_user):
        flash(f"Key {api_key.name} ({api_key.prefix}…) is revoked; callers using it get 401 within seconds.", "info")
    else:
        flash(f"Key {api_key.name} was already revoked.", "error")
    return redirect(url_for("console.api_key_list"))


@bp.post("/operations/api-keys/<int:key_id>/rate-limit")
@admin_required
def api_key_rate_limit(key_id: int):
    api_key = _key_or_404(key_id)
    form = RateLimitForm()
    if not form.validate():
        return _render_keys(ApiKeyForm(formdata=None), 400, {api_key.id: form})
    change_rate_limit(api_key, form.rate_limit.data, current_user)
    flash(f"Key {api_key.name} may now make {api_key.rate_limit}.", "info")
    return redirect(url_for("console.api_key_list"))
