"""Twilio callbacks: message status receipts and inbound messages (STOP / START / HELP).

Both are verified with ``X-Twilio-Signature`` against the auth token of the
account named in the request's ``AccountSid``; the URL signed is the public
one (``HERALD_BASE_URL`` + path), which is what Twilio was told to call.
A bad or missing signature is a 403 and changes nothing.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from flask import Response, abort, current_app, request
from sqlalchemy import delete, select

from app.channels.twilio_sms import TwilioAccount, TwilioSms, accounts
from app.delivery.receipts import TWILIO_DEAD_NUMBER_CODES, TWILIO_FINAL
from app.delivery.signatures import twilio_signature_valid
from app.delivery.sms import inbound_keyword, to_e164
from app.extensions import db
from app.models import Recipient, Suppression
from app.outbound_webhooks import events as webhook_events
from app.outbound_webhooks.outbox import emit
from app.webhooks.blueprint import bp
from app.webhooks.receipts import settle, suppress

STOP_REASON = "STOP"


def verified_account() -> TwilioAccount:
    config = current_app.config
    account = next((a for a in accounts(config) if a.sid == request.form.get("AccountSid")), None)
    signature = request.headers.get("X-Twilio-Signature", "")
    url = config["BASE_URL"] + request.full_path.rstrip("?")
    params = list(request.form.items(multi=True))
    if account is None or not signature or not twilio_signature_valid(url, params, account.token, signature):
        abort(403, "bad Twilio signature")
    return account


def twiml(reply: str | None = None) -> Response:
    body = f"<Message>{escape(reply)}</Message>" if reply else ""
    return Response(f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>', mimetype="text/xml")


@bp.post("/sms/status")
def sms_status():
    verified_account()
    error_code = request.form.get("ErrorCode") or None
    delivery = settle(
        TwilioSms.name,
        request.form.get("MessageSid", ""),
        request.form.get("MessageStatus", ""),
        TWILIO_FINAL,
        error_code=f"twilio_{error_code}" if error_code else None,
        detail=request.form.get("ErrorMessage"),
    )
    if delivery is not None and error_code in TWILIO_DEAD_NUMBER_CODES:
        number = to_e164(request.form.get("To", ""))
        if number:
            suppress(TwilioSms.name, number, f"dead number (twilio {error_code})")
    db.session.commit()
    return "", 204


@bp.post("/sms/inbound")
def sms_inbound():
    verified_account()
    number = to_e164(request.form.get("From", ""))
    keyword = inbound_keyword(request.form.get("Body", ""))
    if number is None or keyword is None:
        return twiml()
    if keyword == "stop":
        suppress(TwilioSms.name, number, STOP_REASON)
        owners = db.session.scalars(select(Recipient.external_id).where(Recipient.phone == number)).all()
        emit(
            [
                fact
                for user_id in owners
                for fact in webhook_events.unsubscribed(user_id, TwilioSms.name, None, "sms_stop")
            ]
        )
    elif keyword == "start":
        db.session.execute(
            delete(Suppression).where(
                Suppression.channel == TwilioSms.name, Suppression.address == number, Suppression.reason == STOP_REASON
            )
        )
    db.session.commit()
    # Twilio's own opt-out handling confirms STOP and START to the sender; HELP is answered here.
    return twiml(current_app.config["SMS_HELP_TEXT"] if keyword == "help" else None)
