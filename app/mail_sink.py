"""A local SMTP server for the default run: it keeps every mail as an ``.eml`` file instead of sending it.

``flask up`` starts it when no ``SMTP_URL`` is configured, so the email
channel works end to end on a laptop and nothing leaves the machine. Open the
files with any mail client, or read them as text.
"""

from __future__ import annotations

import itertools
import logging
import socket
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path

from aiosmtpd.controller import Controller

log = logging.getLogger("herald.mail_sink")


class EmlFileHandler:
    """aiosmtpd handler: writes each message to ``directory`` and logs one line."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sequence = itertools.count(1)

    async def handle_DATA(self, server, session, envelope) -> str:
        path = self._next_path()
        path.write_bytes(self._with_envelope_headers(envelope))
        subject = BytesHeaderParser().parsebytes(envelope.original_content or envelope.content).get("Subject", "")
        log.info("mail to %s: %r (%s)", ", ".join(envelope.rcpt_tos), subject, path.name)
        return "250 Message accepted for delivery"

    def _next_path(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        return self.directory / f"{stamp}-{next(self._sequence):04d}.eml"

    @staticmethod
    def _with_envelope_headers(envelope) -> bytes:
        """Prepend the SMTP envelope, which is where Bcc recipients show up."""
        header = f"X-Envelope-From: {envelope.mail_from}\r\nX-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        return header.encode() + (envelope.original_content or envelope.content)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_mail_sink(directory: Path, port: int = 0, host: str = "127.0.0.1") -> Controller:
    """Start the sink in a background thread on ``host:port`` (0 = a free port); ``.stop()`` ends it."""
    # aiosmtpd logs every connection, including the controller's own readiness probe.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = Controller(EmlFileHandler(directory), hostname=host, port=port or free_port(host))
    controller.start()
    return controller


def smtp_url(controller: Controller) -> str:
    return f"smtp://{controller.hostname}:{controller.port}"
