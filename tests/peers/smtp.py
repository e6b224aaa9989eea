"""A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

from __future__ import annotations

import asyncio
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller


class RecordingHandler:
    def __init__(self):
        self.messages: list[EmailMessage] = []
        self.raw: list[bytes] = []  # each message's bytes exactly as they came over the wire
        self.lock = threading.Lock()
        self.delay_seconds = 0.0
        self.rcpt_delay_seconds = 0.0
        # Set while a client waits on our RCPT answer: a sender killed then has provably not sent DATA.
        self.waiting_in_rcpt = threading.Event()
        self.reject_rcpt: dict[str, str] = {}  # address -> SMTP reply, e.g. "550 5.1.1 no such user"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_delay_seconds:
            self.waiting_in_rcpt.set()
            await asyncio.sleep(self.rcpt_delay_seconds)
            self.waiting_in_rcpt.clear()
        if address in self.reject_rcpt:
            return self.reject_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(message)
            self.raw.append(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, port: int):
        self.handler = RecordingHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port)
        self.port = port

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def raw(self) -> list[bytes]:
        with self.handler.lock:
            return list(self.handler.raw)

    def message_ids(self) -> list[str]:
        return [m["Message-ID"] for m in self.messages]

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
