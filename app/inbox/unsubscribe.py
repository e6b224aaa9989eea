"""One-click unsubscribe from marketing mail (RFC 8058), authorised by a signed token."""

from __future__ import annotations

from flask import abort, current_app, render_template, request

from app.channels.email import SmtpEmail
from app.delivery.unsubscribe import read_unsubscribe_token
from app.extensions import csrf, db
from app.inbox.blueprint import bp
from app.models import Preference
from app.outbound_webhooks import events as webhook_events
from app.outbound_webhooks.outbox import emit
from app.recipients import find_recipient


def _recipient_and_category(token: str):
    parsed = read_unsubscribe_token(current_app.config["SECRET_KEY"], token)
    if parsed is None:
        abort(404, "This unsubscribe link is not valid.")
    external_id, category = parsed
    recipient = find_recipient(external_id)
    if recipient is None:
        abort(404, "This unsubscribe link is not valid any more.")
    return recipient, category


def opt_out_of_email_category(recipient, category: str) -> None:
    preference = db.session.get(Preference, (recipient.id, SmtpEmail.name, category))
    if preference is None or preference.enabled:
        emit(webhook_events.unsubscribed(recipient.external_id, SmtpEmail.name, category))
    if preference is None:
        db.session.add(Preference(recipient_id=recipient.id, channel=SmtpEmail.name, category=category, enabled=False))
    else:
        preference.enabled = False
    db.session.commit()


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str):
    _recipient, category = _recipient_and_category(token)
    return render_template("inbox/unsubscribe.html", category=category, token=token, done=False)


@bp.post("/unsubscribe/<token>")
@csrf.exempt
def unsubscribe(token: str):
    """Mail clients POST ``List-Unsubscribe=One-Click`` without cookies or CSRF tokens; the signature is the proof."""
    recipient, category = _recipient_and_category(token)
    opt_out_of_email_category(recipient, category)
    if request.form.get("List-Unsubscribe") == "One-Click":
        return "", 200
    return render_template("inbox/unsubscribe.html", category=category, token=token, done=True)
