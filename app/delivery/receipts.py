"""Provider receipts (delivery status callbacks, bounce events) as transitions of a delivery. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr

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


# SES notifications (through SNS) that settle a message.
SES_FINAL = {"delivery": DELIVERED, "bounce": FAILED}


@dataclass(frozen=True)
class SesEvent:
    kind: str  # "bounce", "complaint", "delivery", ... lower-cased
    message_id: str | None  # the MessageId SendBulkEmail answered
    suppress: tuple[tuple[str, str], ...]  # (address, reason)
    detail: str | None = None


def ses_event(notification: dict) -> SesEvent:
    """An SES notification (``notificationType``) or configuration-set event (``eventType``), read.

    Like SendGrid's: a hard bounce (bounceType ``Permanent``) and a complaint both put the address on
    the suppression list; a transient bounce fails the message (SES gave up on it) without suppressing.
    """
    kind = str(notification.get("notificationType") or notification.get("eventType") or "").lower()
    message_id = (notification.get("mail") or {}).get("messageId")
    suppress: list[tuple[str, str]] = []
    detail = None
    if kind == "bounce":
        bounce = notification.get("bounce") or {}
        detail = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
        if bounce.get("bounceType") == "Permanent":
            suppress = [(r.get("emailAddress"), "hard bounce (ses)") for r in bounce.get("bouncedRecipients") or []]
    elif kind == "complaint":
        complaint = notification.get("complaint") or {}
        suppress = [(r.get("emailAddress"), "complaint (ses)") for r in complaint.get("complainedRecipients") or []]
    addresses = tuple(
        (parseaddr(str(address))[1].lower(), reason) for address, reason in suppress if address and "@" in str(address)
    )
    return SesEvent(kind, str(message_id) if message_id else None, addresses, detail)
