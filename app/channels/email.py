"""Email over SMTP with one reused connection per relay per worker, failing over between relays.

SMTP has no idempotency key, so the delivery's key becomes the Message-ID:
a receiving system (and our tests) can recognise a re-driven copy -- including
the rare copy a failover sends when the first relay accepted the message but
the connection broke before it said so.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from urllib.parse import unquote, urlparse

from app.channels.base import Channel, Message, Outcome, Result, register
from app.channels.guard import first_available
from app.delivery.unsubscribe import with_mailto

# SMTP reply codes that mean the address itself is dead (hard bounce).
DEAD_ADDRESS_CODES = {550, 551, 553}
# "Service not available, closing channel": the relay, not the message, is the problem.
RELAY_DOWN_CODES = {421}


def classify_smtp_code(code: int) -> Outcome:
    if 400 <= code < 500:
        return Outcome.TRANSIENT
    if code in DEAD_ADDRESS_CODES:
        return Outcome.TOKEN_GONE
    return Outcome.PERMANENT


class VerbatimHeader(str):
    """A header written exactly as given (RFC 2369/8058 list headers), folded only between its ``<…>`` items.

    The email package's default policy RFC 2047-encodes any word too long for a 78-character line, which turns
    ``<https://…>`` into ``=?utf-8?q?=3Chttps…?=`` -- a header mailbox providers then cannot read. A value
    object with ``name`` and ``fold`` is what ``email.policy.EmailPolicy`` writes without re-parsing it.
    """

    name: str

    def __new__(cls, name: str, value: str) -> VerbatimHeader:
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy) -> str:
        return f"{self.name}: " + f",{policy.linesep} ".join(LIST_ITEM_SEPARATOR.split(self)) + policy.linesep


VERBATIM_HEADERS = {"List-Unsubscribe", "List-Unsubscribe-Post"}
LIST_ITEM_SEPARATOR = re.compile(r"(?<=>)\s*,\s*(?=<)")


def build_email(message: Message, sender: str, unsubscribe_mailto: str | None = None) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.address
    email["Subject"] = message.content["subject"]
    email["Date"] = formatdate(localtime=False)
    domain = parseaddr(sender)[1].partition("@")[2] or "herald.local"
    email["Message-ID"] = f"<{message.idempotency_key}@{domain}>"
    for name, value in with_mailto(message.headers, unsubscribe_mailto).items():
        email[name] = VerbatimHeader(name, value) if name in VERBATIM_HEADERS else value
    email.set_content(message.content.get("text") or message.content["subject"])
    if message.content.get("html"):
        email.add_alternative(message.content["html"], subtype="html")
    return email


class SmtpRelay:
    """One SMTP relay (``SMTP_URL`` or ``SMTP_FALLBACK_URL``) and its reused connection."""

    def __init__(self, name: str, url: str, timeout: float):
        self.name, self.url, self.timeout = name, url, timeout
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        url = urlparse(self.url)
        port = url.port or (465 if url.scheme == "smtps" else 25)
        if url.scheme == "smtps":
            connection = smtplib.SMTP_SSL(
                url.hostname, port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = smtplib.SMTP(url.hostname, port, timeout=self.timeout)
            if url.scheme == "smtp+starttls":
                connection.starttls(context=ssl.create_default_context())
        if url.username:
            connection.login(unquote(url.username), unquote(url.password or ""))
        return connection

    def send(self, email: EmailMessage) -> Result:
        try:
            self._send_with_reconnect(email)
        except smtplib.SMTPRecipientsRefused as error:
            code, reply = next(iter(error.recipients.values()))
            return self._refused(code, reply)
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
            return self._refused(error.smtp_code, error.smtp_error)
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            return Result(
                Outcome.TRANSIENT,
                self.name,
                error_code="smtp_connection",
                detail=f"{type(error).__name__}: {error}",
                provider_fault=True,
            )
        return Result(Outcome.DISPATCHED, self.name, provider_message_id=email["Message-ID"])

    def _refused(self, code: int, reply: bytes | str) -> Result:
        return Result(
            classify_smtp_code(code),
            self.name,
            error_code=f"smtp_{code}",
            detail=_text(reply),
            provider_fault=code in RELAY_DOWN_CODES,
        )

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


@register("email")
class SmtpEmail(Channel):
    label = "Email"
    order, send_order, preference_column = 1, 4, 1
    address_field = "email"
    address_case_sensitive = False  # suppression lists match the lower-cased address
    tracks_links = True
    one_click_unsubscribe = True
    content_fields = ("subject", "html", "text")
    optional_fields = frozenset({"text"})  # without one, the plain-text part carries the subject
    field_limits = {"subject": 998}
    previews_as_mail = True

    def __init__(self, app_config: dict):
        super().__init__(app_config)
        self._relays: dict[str, SmtpRelay] = {}

    def relays(self) -> list[SmtpRelay]:
        """The configured relays in order; read per send so a changed setting applies at once."""
        wanted = [
            (name, self.config.get(setting))
            for name, setting in (("smtp", "SMTP_URL"), ("smtp-fallback", "SMTP_FALLBACK_URL"))
        ]
        relays = []
        for name, url in wanted:
            if not url:
                continue
            relay = self._relays.get(name)
            if relay is None or relay.url != url:
                if relay is not None:
                    relay.close()
                relay = self._relays[name] = SmtpRelay(name, url, self.config.get("SMTP_TIMEOUT", 10.0))
            relays.append(relay)
        return relays

    def send(self, message: Message) -> Result:
        relays = self.relays()
        if not relays:
            return Result(Outcome.PERMANENT, "smtp", error_code="not_configured", detail="SMTP_URL is not set")
        email = build_email(message, self.config["MAIL_FROM"], self.config.get("UNSUBSCRIBE_MAILTO"))
        return first_available((relay.name, (lambda relay=relay: relay.send(email)), 0.0) for relay in relays)

    def close(self) -> None:
        for relay in self._relays.values():
            relay.close()


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
