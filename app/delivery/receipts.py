"""Provider receipts (delivery status callbacks, bounce events) as transitions of a delivery. Pure."""

from __future__ import annotations

from app.delivery.constants import DELIVERED, DISPATCHED, FAILED

# Twilio MessageStatus values that settle a message; the rest (queued, sending, sent...) are progress.
TWILIO_FINAL = {"delivered": DELIVERED, "read": DELIVERED, "undelivered": FAILED, "failed": FAILED}
# Twilio error codes on a failed message that mean the number itself cannot get SMS: suppress it.
TWILIO_DEAD_NUMBER_CODES = frozenset({"21211", "21610", "21614", "30005", "30006"})
# SendGrid Event Webhook events that settle a message.
SENDGRID_FINAL = {"delivered": DELIVERED, "bounce": FAILED, "dropped": FAILED}


def receipt_transition(current: str, reported: str, final: dict[str, str]) -> str | None:
    """The status a receipt moves a delivery to, or None when it changes nothing.

    Only a DISPATCHED delivery moves: receipts arrive late, twice and out of
    order ("sent" after "delivered"), and a settled delivery stays settled.
    """
    target = final.get(reported.lower())
    if target is None or current != DISPATCHED:
        return None
    return target


def sendgrid_suppression_reason(event: dict) -> str | None:
    """Why a SendGrid event puts its address on the suppression list, or None.

    A hard bounce (``bounce`` of type ``bounce``; type ``blocked`` is a
    temporary refusal) and a spam complaint (``spamreport``) both mean: never
    mail this address again.
    """
    kind = event.get("event")
    if kind == "bounce" and event.get("type", "bounce") == "bounce":
        return "hard bounce (sendgrid)"
    if kind == "spamreport":
        return "complaint (sendgrid)"
    return None
