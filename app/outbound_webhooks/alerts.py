"""The email admins get when an endpoint is disabled: over SMTP_URL, through the email channel's relay client."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from flask import current_app
from sqlalchemy import select

from app.channels.base import Outcome
from app.channels.email import SmtpRelay
from app.extensions import db
from app.models import StaffUser, WebhookEndpoint

log = logging.getLogger(__name__)


def admin_addresses() -> list[str]:
    return list(
        db.session.scalars(
            select(StaffUser.email).where(StaffUser.role == "admin", StaffUser.active.is_(True)).order_by(StaffUser.id)
        )
    )


def disabled_email(endpoint: WebhookEndpoint, recipients: list[str], sender: str, console_url: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = ", ".join(recipients)
    email["Subject"] = f"Herald disabled the webhook endpoint {endpoint.url}"
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = make_msgid(domain="herald.local")
    email.set_content(
        f"Herald stopped sending webhooks to\n\n    {endpoint.url}\n\nbecause {endpoint.disabled_reason}.\n\n"
        f"Messages for it are kept. Once the endpoint answers again, enable it in the console and they are sent, "
        f"oldest first:\n\n    {console_url}\n"
    )
    return email


def endpoint_disabled(endpoint_id: int) -> bool:
    """Tell every active admin; True when the relay took the mail. Without SMTP_URL it is only logged."""
    config = current_app.config
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    recipients = admin_addresses()
    log.warning("webhook endpoint %s (%s) disabled: %s", endpoint_id, endpoint.url, endpoint.disabled_reason)
    if not config.get("SMTP_URL") or not recipients:
        log.warning("no SMTP_URL or no admin to tell about webhook endpoint %s", endpoint_id)
        return False
    console_url = f"{config['BASE_URL']}/console/webhooks/{endpoint_id}"
    relay = SmtpRelay("smtp", config["SMTP_URL"], config["SMTP_TIMEOUT"])
    try:
        result = relay.send(disabled_email(endpoint, recipients, config["MAIL_FROM"], console_url))
    finally:
        relay.close()
    if result.outcome is not Outcome.DISPATCHED:
        log.warning("could not email admins about webhook endpoint %s: %s", endpoint_id, result.detail)
        return False
    return True
