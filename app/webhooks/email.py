"""Email provider events: bounces and complaints feed the suppression list, receipts settle deliveries.

``POST /webhooks/email/sendgrid`` takes SendGrid's Event Webhook: a JSON
array of events, signed with ECDSA (``X-Twilio-Email-Event-Webhook-Signature``
over ``X-Twilio-Email-Event-Webhook-Timestamp`` + the raw body) by the key
in ``SENDGRID_WEBHOOK_PUBLIC_KEY``. A bad signature is a 403 and changes nothing.
"""

from __future__ import annotations

import json

from flask import abort, current_app, jsonify, request

from app.channels.email import SmtpEmail
from app.delivery.receipts import SENDGRID_FINAL, sendgrid_suppression_reason
from app.delivery.signatures import sendgrid_signature_valid
from app.extensions import db
from app.webhooks.blueprint import bp
from app.webhooks.receipts import settle, suppress

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


@bp.post("/email/<provider>")
def email_events(provider: str):
    if provider != "sendgrid":
        abort(404, f"no email webhook for provider {provider!r}")
    key = current_app.config.get("SENDGRID_WEBHOOK_PUBLIC_KEY")
    payload = request.get_data()
    if not key or not sendgrid_signature_valid(
        key, request.headers.get(TIMESTAMP_HEADER, ""), payload, request.headers.get(SIGNATURE_HEADER, "")
    ):
        abort(403, "bad SendGrid signature")
    try:
        events = json.loads(payload)
    except ValueError:
        abort(400, "body is not JSON")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        abort(400, "body must be a JSON array of events")
    suppressed = settled = 0
    for event in events:
        address = str(event.get("email") or "").strip().lower()
        reason = sendgrid_suppression_reason(event)
        if reason and address:
            suppress(SmtpEmail.name, address, reason)
            suppressed += 1
        # Sent through the Mail Send API (app/channels/email_api/), the Message-ID comes back as a custom arg.
        message_id = event.get("herald_message_id") or event.get("smtp-id")
        if message_id and settle(
            SmtpEmail.name,
            str(message_id),
            str(event.get("event", "")),
            SENDGRID_FINAL,
            error_code=f"sendgrid_{event.get('event')}",
            detail=event.get("reason"),
        ):
            settled += 1
    db.session.commit()
    return jsonify({"events": len(events), "suppressed": suppressed, "settled": settled})
