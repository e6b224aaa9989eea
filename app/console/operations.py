"""Console area: operations (admins only).

The delivery log answers "what happened to notification Y?"; the dead-letter
list lets staff send failed deliveries again or put them aside; the health
page shows queues and providers; API keys are created, limited and revoked
here. Every change is audited.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from limits import parse as parse_rate_limit
from redis.exceptions import RedisError
from sqlalchemy import or_, select, update
from sqlalchemy.orm import selectinload
from wtforms import SelectMultipleField, StringField
from wtforms.widgets import CheckboxInput, ListWidget
from wtforms.validators import DataRequired, Length, ValidationError

from app.api.keys import create_api_key, revoke
from app.api.scopes import DEFAULT_SCOPES, SCOPES
from app.auth import admin_required
from app.console import bp
from app.console.audit import Page, page_number, page_of, record_change
from app.delivery.constants import FAILED, PENDING
from app.extensions import db, htmx
from app.models import ApiKey, Delivery, DeliveryEvent, Notification, Recipient
from app.models.types import utcnow
from jobs.delivery import dispatch_delivery, enqueue
from jobs.queues import queue_depths

log = logging.getLogger(__name__)

RETRY_BATCH = 500
DEFAULT_RATE_LIMIT = "6000/minute"


# -- delivery log ----------------------------------------------------------------------------------

def find_notifications(query: str, number: int) -> Page:
    """Notifications whose id, recipient user id or idempotency key is exactly ``query``; newest first."""
    statement = (select(Notification).join(Recipient, Recipient.id == Notification.recipient_id)
                 .where(or_(Notification.id == query, Recipient.external_id == query,
                            Notification.idempotency_key == query))
                 .options(selectinload(Notification.deliveries))
                 .order_by(Notification.created_at.desc(), Notification.id.desc()))
    return page_of(statement, number)


@dataclass(frozen=True)
class Step:
    at: datetime | None
    label: str
    detail: str | None = None


def notification_steps(notification: Notification) -> list[Step]:
    """Accepted and routed, the notification's own milestones; deliveries carry their own events."""
    steps = [Step(notification.created_at, "accepted",
                  f"idempotency key {notification.idempotency_key}" if notification.idempotency_key else None)]
    if notification.routed_at:
        steps.append(Step(notification.routed_at, "routed",
                          f"{len(notification.deliveries)} deliveries: " + ", ".join(d.channel for d in notification.deliveries)))
    if notification.inbox_at:
        steps.append(Step(notification.inbox_at, "in inbox"))
    if notification.read_at:
        steps.append(Step(notification.read_at, "read"))
    if notification.clicked_at:
        steps.append(Step(notification.clicked_at, "clicked", f"first click, from {notification.clicked_channel}"))
    return sorted(steps, key=lambda step: step.at)


def load_notification(notification_id: str) -> Notification | None:
    return db.session.scalar(
        select(Notification).where(Notification.id == notification_id)
        .options(selectinload(Notification.deliveries).selectinload(Delivery.events))
    )


# -- dead letters ----------------------------------------------------------------------------------

def _dead(statement):
    return statement.where(Delivery.dead_lettered_at.is_not(None), Delivery.status == FAILED)


def dead_letters(number: int) -> Page:
    statement = _dead(select(Delivery).options(selectinload(Delivery.notification))
                      .order_by(Delivery.dead_lettered_at.desc(), Delivery.id.desc()))
    return page_of(statement, number)


def _snapshot(status: str, dead_at, error_code, attempts) -> dict:
    return {"status": status, "dead_lettered_at": dead_at, "error_code": error_code, "attempts": attempts}


def _revive(ids: list[int], actor, now: datetime) -> list[tuple[int, str]]:
    """FAILED + dead-lettered -> PENDING for these ids; returns the (id, priority) pairs this call won.

    The WHERE repeats the dead-letter condition, so two staff clicking retry at once send once.
    """
    rows = db.session.execute(
        _dead(select(Delivery.id, Delivery.dead_lettered_at, Delivery.error_code, Delivery.attempts,
                     Notification.priority).join(Notification).where(Delivery.id.in_(ids)))
    ).all()
    won = set(db.session.scalars(
        _dead(update(Delivery).where(Delivery.id.in_([r.id for r in rows])))
        .values(status=PENDING, dead_lettered_at=None, not_before=None, updated_at=now)
        .returning(Delivery.id), execution_options={"synchronize_session": False}
    ))
    detail = f"retried by {actor.email}"
    revived = []
    for row in rows:
        if row.id not in won:
            continue
        db.session.add(DeliveryEvent(delivery_id=row.id, status=PENDING, detail=detail, created_at=now))
        record_change(actor, "delivery.retry", "delivery", row.id,
                      _snapshot(FAILED, row.dead_lettered_at, row.error_code, row.attempts),
                      _snapshot(PENDING, None, row.error_code, row.attempts))
        revived.append((row.id, row.priority))
    db.session.commit()
    return revived


def _dispatch(revived: list[tuple[int, str]]) -> None:
    for delivery_id, priority in revived:
        enqueue(dispatch_delivery, delivery_id, priority=priority)


def retry_dead_letter(delivery_id: int, actor) -> bool:
    """Send a dead letter again: PENDING, attempts kept (so it gets one more try), a dispatch job queued."""
    revived = _revive([delivery_id], actor, utcnow())
    _dispatch(revived)
    return bool(revived)


def retry_all_dead_letters(actor) -> int:
    """Retry every dead letter there is now, in batches; ones that fail again meanwhile are not re-picked."""
    now, after_id, total = utcnow(), 0, 0
    while True:
        ids = list(db.session.scalars(_dead(select(Delivery.id)).where(
            Delivery.id > after_id, Delivery.dead_lettered_at <= now).order_by(Delivery.id).limit(RETRY_BATCH)))
        if not ids:
            return total
        revived = _revive(ids, actor, now)
        _dispatch(revived)
        total += len(revived)
        after_id = ids[-1]


def discard_dead_letter(delivery_id: int, actor) -> bool:
    """Take a dead letter off the list for good: it stays FAILED, with who discarded it as the reason."""
    now = utcnow()
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None:
        return False
    before = _snapshot(delivery.status, delivery.dead_lettered_at, delivery.error_code, delivery.attempts)
    reason = f"discarded by {actor.email}"
    result = db.session.execute(
        _dead(update(Delivery).where(Delivery.id == delivery_id))
        .values(dead_lettered_at=None, reason=reason[:255], updated_at=now),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount != 1:
        db.session.rollback()
        return False
    db.session.add(DeliveryEvent(delivery_id=delivery_id, status=FAILED, detail=reason, created_at=now))
    record_change(actor, "delivery.discard", "delivery", delivery_id, before,
                  {**before, "dead_lettered_at": None, "reason": reason})
    db.session.commit()
    return True


# -- health ----------------------------------------------------------------------------------------

def queues_or_none() -> dict | None:
    try:
        return queue_depths()
    except RedisError:
        log.warning("operations: Redis did not answer; queue depths left out", exc_info=True)
        return None


def providers_or_none() -> list[dict] | None:
    """Provider circuits and error rates, when the channel layer offers them and Redis answers."""
    try:
        from app.channels.health import provider_health
    except ImportError:
        return None
    try:
        return provider_health()
    except RedisError:
        log.warning("operations: provider health unavailable", exc_info=True)
        return None


# -- API keys --------------------------------------------------------------------------------------

def check_rate_limit(text: str) -> str:
    """One ``limits`` rate such as ``6000/minute``; raises ValueError with a sentence for the form."""
    text = text.strip()
    if any(sep in text for sep in ";,|"):
        raise ValueError("Give one rate, like 6000/minute.")
    try:
        item = parse_rate_limit(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a rate; write it like 6000/minute or 10/second.") from None
    if item.amount < 1:
        raise ValueError("The rate must allow at least one request.")
    return text


def _rate_limit_validator(_form, field) -> None:
    try:
        field.data = check_rate_limit(field.data or "")
    except ValueError as error:
        raise ValidationError(str(error)) from None


class ApiKeyForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("Name the key after the service that will use it."),
                                           Length(max=255)])
    rate_limit = StringField("Rate limit", default=DEFAULT_RATE_LIMIT,
                             validators=[DataRequired("Give a rate limit."), Length(max=64), _rate_limit_validator])
    scopes = SelectMultipleField("Scopes", choices=[(name, f"{name} — {meaning}") for name, meaning in SCOPES.items()],
                                 default=list(DEFAULT_SCOPES), widget=ListWidget(prefix_label=False),
                                 option_widget=CheckboxInput(), validators=[DataRequired("Choose at least one scope.")])


class RateLimitForm(FlaskForm):
    rate_limit = StringField("Rate limit", validators=[DataRequired("Give a rate limit."), Length(max=64),
                                                       _rate_limit_validator])


def _key_snapshot(api_key: ApiKey) -> dict:
    return {"name": api_key.name, "prefix": api_key.prefix, "rate_limit": api_key.rate_limit,
            "scopes": api_key.scopes, "revoked_at": api_key.revoked_at}


def create_key(name: str, rate_limit: str, actor, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create a key and audit it. ``create_api_key`` commits on its own, so the entry follows at once."""
    api_key, plaintext = create_api_key(name, rate_limit, scopes)
    record_change(actor, "api_key.create", "api_key", api_key.id, None, _key_snapshot(api_key))
    db.session.commit()
    return api_key, plaintext


def revoke_key(api_key: ApiKey, actor) -> bool:
    """Revoke and audit; like creation, ``revoke`` commits on its own and the entry follows at once."""
    if api_key.revoked_at is not None:
        return False
    before = _key_snapshot(api_key)
    revoke(api_key)
    record_change(actor, "api_key.revoke", "api_key", api_key.id, before, _key_snapshot(api_key))
    db.session.commit()
    return True


def change_rate_limit(api_key: ApiKey, rate_limit: str, actor) -> None:
    """Takes effect within the key cache's lifetime (seconds) in every web process."""
    before = _key_snapshot(api_key)
    api_key.rate_limit = rate_limit
    record_change(actor, "api_key.rate_limit", "api_key", api_key.id, before, _key_snapshot(api_key))
    db.session.commit()


def api_keys(number: int) -> Page:
    return page_of(select(ApiKey).order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc(), ApiKey.id.desc()),
                   number)


# -- views -----------------------------------------------------------------------------------------

@bp.get("/console/operations")
@admin_required
def operations():
    """The delivery log: search by notification id, user id or idempotency key."""
    query = request.args.get("q", "").strip()[:255]
    results = find_notifications(query, page_number(request.args.get("page"))) if query else None
    if results is not None and not htmx and results.number == 1 and len(results.items) == 1 \
            and results.items[0].id == query:
        return redirect(url_for("console.notification_timeline", notification_id=query))
    template = "console/operations/_log_results.html" if htmx else "console/operations/log.html"
    return render_template(template, query=query, results=results)


@bp.get("/console/operations/notifications/<notification_id>")
@admin_required
def notification_timeline(notification_id: str):
    notification = load_notification(notification_id)
    if notification is None:
        abort(404, "No notification with that id (it may have been erased with its recipient).")
    recipient = db.session.get(Recipient, notification.recipient_id)
    return render_template("console/operations/timeline.html", notification=notification, recipient=recipient,
                           steps=notification_steps(notification))


@bp.get("/console/operations/dead-letters")
@admin_required
def dead_letter_list():
    entries = dead_letters(page_number(request.args.get("page")))
    return render_template("console/operations/dead_letters.html", entries=entries, form=FlaskForm())


@bp.post("/console/operations/dead-letters/<int:delivery_id>/retry")
@admin_required
def dead_letter_retry(delivery_id: int):
    if retry_dead_letter(delivery_id, current_user):
        flash(f"Delivery {delivery_id} is queued to be sent again.", "info")
    else:
        flash(f"Delivery {delivery_id} is no longer a dead letter; nothing was done.", "error")
    return redirect(url_for("console.dead_letter_list"))


@bp.post("/console/operations/dead-letters/retry-all")
@admin_required
def dead_letter_retry_all():
    count = retry_all_dead_letters(current_user)
    flash(f"{count} dead letters are queued to be sent again.", "info")
    return redirect(url_for("console.dead_letter_list"))


@bp.post("/console/operations/dead-letters/<int:delivery_id>/discard")
@admin_required
def dead_letter_discard(delivery_id: int):
    if discard_dead_letter(delivery_id, current_user):
        flash(f"Delivery {delivery_id} was discarded.", "info")
    else:
        flash(f"Delivery {delivery_id} is no longer a dead letter; nothing was done.", "error")
    return redirect(url_for("console.dead_letter_list"))


@bp.get("/console/operations/health")
@admin_required
def health_page():
    return render_template("console/operations/health.html", queues=queues_or_none(), providers=providers_or_none())


def _render_keys(form: ApiKeyForm, status: int = 200, limit_forms: dict | None = None):
    keys = api_keys(page_number(request.args.get("page")))
    forms = {k.id: RateLimitForm(formdata=None, rate_limit=k.rate_limit) for k in keys.items}
    forms.update(limit_forms or {})
    return render_template("console/operations/api_keys.html", keys=keys, form=form, limit_forms=forms), status


@bp.get("/console/operations/api-keys")
@admin_required
def api_key_list():
    return _render_keys(ApiKeyForm(formdata=None))


@bp.post("/console/operations/api-keys")
@admin_required
def api_key_create():
    form = ApiKeyForm()
    if not form.validate():
        return _render_keys(form, 400)
    api_key, plaintext = create_key(form.name.data.strip(), form.rate_limit.data, current_user, form.scopes.data)
    # The plaintext exists only in this response: it is never stored, so it is shown here once.
    response = render_template("console/operations/api_key_created.html", api_key=api_key, plaintext=plaintext)
    return response, 201, {"Cache-Control": "no-store"}


def _key_or_404(key_id: int) -> ApiKey:
    api_key = db.session.get(ApiKey, key_id)
    if api_key is None:
        abort(404, "No API key with that id.")
    return api_key


@bp.post("/console/operations/api-keys/<int:key_id>/revoke")
@admin_required
def api_key_revoke(key_id: int):
    api_key = _key_or_404(key_id)
    if revoke_key(api_key, current_user):
        flash(f"Key {api_key.name} ({api_key.prefix}…) is revoked; callers using it get 401 within seconds.", "info")
    else:
        flash(f"Key {api_key.name} was already revoked.", "error")
    return redirect(url_for("console.api_key_list"))


@bp.post("/console/operations/api-keys/<int:key_id>/rate-limit")
@admin_required
def api_key_rate_limit(key_id: int):
    api_key = _key_or_404(key_id)
    form = RateLimitForm()
    if not form.validate():
        return _render_keys(ApiKeyForm(formdata=None), 400, {api_key.id: form})
    change_rate_limit(api_key, form.rate_limit.data, current_user)
    flash(f"Key {api_key.name} may now make {api_key.rate_limit}.", "info")
    return redirect(url_for("console.api_key_list"))

