"""What the email API providers share: the request's sender, per-recipient parts of shared content, results."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parseaddr
from functools import cached_property

import httpx

from app.channels.base import Message, Outcome, Result
from app.channels.http import retry_after, transport_failure

DEFAULT_WAIT = 1.0  # seconds, when a provider throttles without saying for how long


@dataclass(frozen=True)
class Sender:
    email: str
    name: str

    @cached_property
    def domain(self) -> str:
        return self.email.partition("@")[2].lower() or "herald.local"

    @classmethod
    def parse(cls, text: str) -> Sender:
        name, email = parseaddr(text)
        return cls(email, name)


@dataclass(frozen=True)
class Frame:
    """A field shared by a batch: ``prefix + <per-recipient part> + suffix``; ``parts`` in message order.

    Providers take content once per request and substitute per-recipient values into it (SendGrid
    substitutions, SES template data), so Herald sends what the recipients share once. Only the
    common prefix and suffix are found (one pass, no alignment): a message personalised at its top
    and its foot still goes out whole, just with its middle sent per recipient.
    """

    prefix: str
    suffix: str
    parts: tuple[str, ...]
    whole_per_recipient: bool = False  # sent whole with every recipient even when all are alike
    shared: bool = field(init=False)  # every recipient's part is the same: the field goes out once, as is

    def __post_init__(self):
        alike = not self.whole_per_recipient and self.parts.count(self.parts[0]) == len(self.parts)
        object.__setattr__(self, "shared", alike)


def frame(values: list[str]) -> Frame:
    prefix = os.path.commonprefix(values)
    rest = [value[len(prefix) :] for value in values]
    suffix = os.path.commonprefix([value[::-1] for value in rest])[::-1]
    cut = len(suffix)
    return Frame(prefix, suffix, tuple(value[: len(value) - cut] for value in rest))


def text_of(message: Message) -> str:
    """The plain-text part; without one it carries the subject (as the SMTP adapter does)."""
    return message.content.get("text") or message.content["subject"]


def message_id(message: Message, sender: Sender) -> str:
    """The delivery's Message-ID (its idempotency key), the one the SMTP adapter would have used."""
    return f"<{message.idempotency_key}@{sender.domain}>"


def post_json(
    provider: str, client: httpx.Client, url: str, body: bytes, headers: dict[str, str]
) -> httpx.Response | Result:
    try:
        return client.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    except httpx.HTTPError as error:
        return transport_failure(provider, error)


def dumps(payload) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def throttled(provider: str, response: httpx.Response, code: str, seconds: float | None = None) -> Result:
    """The provider is rate-limiting us: nothing was sent, so the batch waits (no attempt spent)."""
    return Result(
        Outcome.WAIT,
        provider,
        error_code=code,
        detail=response.text[:500],
        retry_after=seconds if seconds is not None else (retry_after(response) or DEFAULT_WAIT),
    )


def request_failed(provider: str, response: httpx.Response, code: str, detail: str) -> Result:
    """A whole request refused: auth (the provider setting is wrong: counts against the breaker), 5xx, else bad input."""
    status = response.status_code
    if status >= 500:
        return Result(
            Outcome.TRANSIENT,
            provider,
            error_code=code,
            detail=detail[:500],
            retry_after=retry_after(response),
            provider_fault=True,
        )
    return Result(
        Outcome.PERMANENT, provider, error_code=code, detail=detail[:500], provider_fault=status in (401, 403)
    )


def json_body(response: httpx.Response):
    try:
        return response.json()
    except ValueError:
        return None


@dataclass
class Answer:
    """One request's outcome: ``request`` for the call as a whole (what the breaker sees), ``results`` per message."""

    request: Result
    results: list[Result]

    @classmethod
    def whole(cls, result: Result, count: int) -> Answer:
        return cls(result, [result] * count)


PostBatch = Callable[[list[Message], Sender], Answer]
