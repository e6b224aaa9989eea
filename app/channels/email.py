"""Email over SMTP with one reused connection per worker.

SMTP has no idempotency key, so the delivery's key becomes the Message-ID:
a receiving system (and our tests) can recognise a re-driven copy.
"""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from urllib.parse import unquote, urlparse

from app.channels.base import Channel, Message, Outcome, Result, register

# SMTP reply codes that mean the address itself is dead (hard bounce).
DEAD_ADDRESS_CODES = {550, 551, 553}


def classify_smtp_code(code: int) -> Outcome:
    if 400 <= code < 500:
        return Outcome.TRANSIENT
    if code in DEAD_ADDRESS_CODES:
        return Outcome.TOKEN_GONE
    return Outcome.PERMANENT


def build_email(message: Message, sender: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.address
    email["Subject"] = message.content["subject"]
    email["Date"] = formatdate(localtime=False)
    domain = parseaddr(sender)[1].partition("@")[2] or "herald.local"
    email["Message-ID"] = f"<{message.idempotency_key}@{domain}>"
    for name, value in message.headers.items():
        email[name] = value
    email.set_content(message.content.get("text") or message.content["subject"])
    if message.content.get("html"):
        email.add_alternative(message.content["html"], subtype="html")
    return email


@register("email")
class SmtpEmail(Channel):
    def __init__(self, app_config: dict):
        super().__init__(app_config)
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        url = urlparse(self.config["SMTP_URL"])
        port = url.port or (465 if url.scheme == "smtps" else 25)
        if url.scheme == "smtps":
            connection = smtplib.SMTP_SSL(url.hostname, port, timeout=15, context=ssl.create_default_context())
        else:
            connection = smtplib.SMTP(url.hostname, port, timeout=15)
            if url.scheme == "smtp+starttls":
                connection.starttls(context=ssl.create_default_context())
        if url.username:
            connection.login(unquote(url.username), unquote(url.password or ""))
        return connection

    def send(self, message: Message) -> Result:
        if not self.config.get("SMTP_URL"):
            return Result(Outcome.PERMANENT, "smtp", error_code="not_configured", detail="SMTP_URL is not set")
        email = build_email(message, self.config["MAIL_FROM"])
        try:
            self._send_with_reconnect(email)
        except smtplib.SMTPRecipientsRefused as error:
            code, reply = next(iter(error.recipients.values()))
            return Result(classify_smtp_code(code), "smtp", error_code=f"smtp_{code}", detail=_text(reply))
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
            return Result(classify_smtp_code(error.smtp_code), "smtp", error_code=f"smtp_{error.smtp_code}", detail=_text(error.smtp_error))
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            return Result(Outcome.TRANSIENT, "smtp", error_code="smtp_connection", detail=f"{type(error).__name__}: {error}")
        return Result(Outcome.DISPATCHED, "smtp", provider_message_id=email["Message-ID"])

    def _send_with_reconnect(self, email: EmailMessage) -> None:
        """Reuse the open connection; if the server dropped it while idle, reconnect once."""
        if self._connection is None:
            self._connection = self._connect()
        try:
            self._connection.send_message(email)
        except smtplib.SMTPServerDisconnected:
            self._connection = self._connect()
            self._connection.send_message(email)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._connection = None


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
