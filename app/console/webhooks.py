"""Console area: outbound webhook endpoints (admins only) -- register, change, rotate, disable, replay.

The work is done in app/outbound_webhooks/endpoints.py (shared with /v1/webhook-endpoints); these views read the
form, call it, audit the change and render. A new or rotated secret is shown once, as POST -> redirect -> GET,
held for the next page in Redis under a slot named in the session (like a new API key).
"""

from __future__ import annotations

import json
import secrets as random

from flask import abort, flash, redirect, render_template, session, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from redis.exceptions import RedisError
from wtforms import SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from app.auth import admin_required
from app.console.audit import record_change
from app.console.blueprint import bp
from app.extensions import db
from app.models import WebhookEndpoint, WebhookMessage
from app.outbound_webhooks import endpoints as store
from app.outbound_webhooks.events import ALL_EVENT_TYPES, EVENT_TYPES
from app.outbound_webhooks.outbox import nudge
from app.redis_client import get_redis, key

SECRET_SLOT = "webhook_secret_slot"
HOLD_SECONDS = 300
NO_STORE = {"Cache-Control": "no-store"}


class EndpointForm(FlaskForm):
    url = StringField("URL", validators=[DataRequired("Give the URL Herald should POST to."), Length(max=2048)])
    description = StringField("Description", validators=[Length(max=255)])
    event_types = SelectMultipleField(
        "Events",
        choices=[(name, f"{name} — {meaning}") for name, meaning in EVENT_TYPES.items()],
        default=list(ALL_EVENT_TYPES),
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        validators=[DataRequired("Choose at least one event.")],
    )


def snapshot(endpoint: WebhookEndpoint) -> dict:
    """What the audit log keeps of an endpoint: never its secret."""
    return {
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "enabled": endpoint.enabled,
    }


def endpoint_or_404(endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        abort(404, "No webhook endpoint with that id.")
    return endpoint


def _apply(form: EndpointForm, change) -> bool:
    """Run ``change`` on valid form data; a refused field gets its message next to it."""
    if not form.validate_on_submit():
        return False
    try:
        change()
    except store.EndpointProblem as problem:
        db.session.rollback()
        getattr(form, problem.field).errors = [str(problem)]
        return False
    return True


def _hand_over_secret(endpoint: WebhookEndpoint, secret: str):
    """303 to the endpoint's page, which shows ``secret`` once; without Redis, this answer shows it."""
    slot = random.token_urlsafe(16)
    try:
        get_redis().set(
            key("console", "webhook-secret", slot), json.dumps({"id": endpoint.id, "secret": secret}), ex=HOLD_SECONDS
        )
    except RedisError:
        return _detail(endpoint, EndpointForm(obj=endpoint), secret=secret, status=201)
    session[SECRET_SLOT] = slot
    return redirect(url_for("console.webhook_endpoint", endpoint_id=endpoint.id), code=303)


def _take_secret(endpoint_id: int) -> str | None:
    slot = session.pop(SECRET_SLOT, None)
    if not slot:
        return None
    try:
        held = get_redis().getdel(key("console", "webhook-secret", slot))
    except RedisError:
        return None
    held = json.loads(held) if held else None
    return held["secret"] if held and held["id"] == endpoint_id else None


@bp.get("/webhooks")
@admin_required
def webhook_endpoints():
    return render_template("console/webhooks/index.html", endpoints=store.endpoints(), form=EndpointForm())


@bp.post("/webhooks")
@admin_required
def webhook_endpoint_create():
    form = EndpointForm()
    created = {}

    def create():
        created["endpoint"], created["secret"] = store.create_endpoint(
            form.url.data.strip(), form.event_types.data, (form.description.data or "").strip()
        )

    if not _apply(form, create):
        return render_template("console/webhooks/index.html", endpoints=store.endpoints(), form=form), 400
    endpoint = created["endpoint"]
    record_change(current_user, "webhook_endpoint.create", "webhook_endpoint", endpoint.id, None, snapshot(endpoint))
    db.session.commit()
    return _hand_over_secret(endpoint, created["secret"])


def _detail(endpoint: WebhookEndpoint, form: EndpointForm, secret: str | None = None, status: int = 200):
    messages = store.recent_messages(endpoint.id)
    return (
        render_template(
            "console/webhooks/endpoint.html",
            endpoint=endpoint,
            form=form,
            secret=secret,
            messages=messages,
            attempts=store.attempts_of([m.id for m in messages]),
            counts=store.message_counts(endpoint.id),
            action=FlaskForm(),
        ),
        status,
        NO_STORE,
    )


@bp.get("/webhooks/<int:endpoint_id>")
@admin_required
def webhook_endpoint(endpoint_id: int):
    endpoint = endpoint_or_404(endpoint_id)
    return _detail(endpoint, EndpointForm(obj=endpoint), secret=_take_secret(endpoint_id))


@bp.post("/webhooks/<int:endpoint_id>")
@admin_required
def webhook_endpoint_update(endpoint_id: int):
    endpoint = endpoint_or_404(endpoint_id)
    before, form = snapshot(endpoint), EndpointForm()

    def change():
        store.change_endpoint(
            endpoint,
            url=form.url.data.strip(),
            event_types=form.event_types.data,
            description=(form.description.data or "").strip(),
        )

    if not _apply(form, change):
        return _detail(endpoint_or_404(endpoint_id), form, status=400)
    record_change(current_user, "webhook_endpoint.update", "webhook_endpoint", endpoint.id, before, snapshot(endpoint))
    db.session.commit()
    flash("Endpoint saved.", "info")
    return redirect(url_for("console.webhook_endpoint", endpoint_id=endpoint.id), code=303)


@bp.post("/webhooks/<int:endpoint_id>/<any(enable, disable):switch>")
@admin_required
def webhook_endpoint_switch(endpoint_id: int, switch: str):
    endpoint = endpoint_or_404(endpoint_id)
    before = snapshot(endpoint)
    store.change_endpoint(endpoint, enabled=switch == "enable")
    record_change(
        current_user, f"webhook_endpoint.{switch}", "webhook_endpoint", endpoint.id, before, snapshot(endpoint)
    )
    db.session.commit()
    flash(
        "Endpoint enabled: kept messages are sent, oldest first." if switch == "enable" else "Endpoint disabled.",
        "info",
    )
    return redirect(url_for("console.webhook_endpoint", endpoint_id=endpoint.id), code=303)


@bp.post("/webhooks/<int:endpoint_id>/rotate")
@admin_required
def webhook_endpoint_rotate(endpoint_id: int):
    endpoint = endpoint_or_404(endpoint_id)
    secret = store.rotate_secret(endpoint)
    record_change(current_user, "webhook_endpoint.rotate_secret", "webhook_endpoint", endpoint.id, None, None)
    db.session.commit()
    return _hand_over_secret(endpoint, secret)


@bp.post("/webhooks/<int:endpoint_id>/delete")
@admin_required
def webhook_endpoint_delete(endpoint_id: int):
    endpoint = endpoint_or_404(endpoint_id)
    record_change(current_user, "webhook_endpoint.delete", "webhook_endpoint", endpoint.id, snapshot(endpoint), None)
    db.session.delete(endpoint)
    db.session.commit()
    flash("Endpoint deleted with its messages.", "info")
    return redirect(url_for("console.webhook_endpoints"), code=303)


@bp.post("/webhooks/<int:endpoint_id>/messages/<int:message_id>/replay")
@admin_required
def webhook_message_replay(endpoint_id: int, message_id: int):
    message = db.session.get(WebhookMessage, message_id)
    if message is None or message.endpoint_id != endpoint_id:
        abort(404, "No such message for this endpoint.")
    if store.replay(message):
        record_change(current_user, "webhook_message.replay", "webhook_message", message.msg_id, None, None)
        db.session.commit()
        nudge()
        flash(f"Message {message.msg_id} is queued to be sent again.", "info")
    else:
        flash(f"Message {message.msg_id} is being sent right now; nothing was done.", "error")
    return redirect(url_for("console.webhook_endpoint", endpoint_id=endpoint_id), code=303)
