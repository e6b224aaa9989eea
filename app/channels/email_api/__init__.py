"""Email through SMTP or a provider's HTTP API in batches (``EMAIL_PROVIDER=smtp|sendgrid|ses|postmark``).

The ``email`` channel is :class:`Email`: with ``smtp`` (the default) it is the SMTP adapter of
``app/channels/email.py`` unchanged; with a provider API it sends a batch of messages per request
(:meth:`Email.send_batch`, which the batch hook of ``app/pipeline/sending.py`` calls with ``batch_size`` messages
at a time) and the window the pipeline claims is at least ``concurrent_sends`` = one request's limit x requests per
group.

Every request goes through the provider's breaker (:func:`app.channels.guard.guarded`) and takes one
token per recipient from the sending domain's bucket (``HERALD_EMAIL_DOMAIN_RATE``, shared by every
worker); a batch is cut into requests of at most one second's worth of that rate.
"""

from __future__ import annotations

from app.channels.base import Message, Outcome, Result, register
from app.channels.email import SmtpEmail
from app.channels.email_api.common import Answer, Sender
from app.channels.email_api.postmark import Postmark
from app.channels.email_api.sendgrid import SendGrid
from app.channels.email_api.ses import Ses
from app.channels.guard import guarded
from app.channels.http import pooled_client

PROVIDERS = {"sendgrid": SendGrid, "ses": Ses, "postmark": Postmark}
# What each provider needs set before it can send (checked per send: a changed setting applies at once).
REQUIRED = {
    "sendgrid": ("SENDGRID_API_KEY",),
    "ses": ("SES_REGION", "SES_ACCESS_KEY_ID", "SES_SECRET_ACCESS_KEY"),
    "postmark": ("POSTMARK_SERVER_TOKEN",),
}


class _GroupSize:
    """Per instance: a provider API's group (one request's limit x requests per group) when one is configured,
    else ``without`` (read on the class too: ``channel_class("email").concurrent_sends`` is SMTP's 1)."""

    def __init__(self, without: int):
        self.without = without

    def __get__(self, adapter, owner=None) -> int:
        provider = adapter.provider() if adapter is not None else None
        return provider.batch_limit * provider.requests_per_group if provider else self.without


@register("email")
class Email(SmtpEmail):
    concurrent_sends = _GroupSize(without=1)
    # The pipeline's batch hook (app/pipeline/sending.py) hands send_batch a group this size; 0 (SMTP): one by one.
    batch_size = _GroupSize(without=0)

    def __init__(self, app_config: dict):
        super().__init__(app_config)
        self._providers: dict[str, object] = {}
        self._client = None

    def provider(self):
        """The configured provider API, or None for SMTP."""
        name = self.config.get("EMAIL_PROVIDER") or "smtp"
        if name not in PROVIDERS:
            return None
        if name not in self._providers:
            if self._client is None:
                self._client = pooled_client(self.config)
            self._providers[name] = PROVIDERS[name](self.config, self._client)
        return self._providers[name]

    def send(self, message: Message) -> Result:
        if self.provider() is None:
            return super().send(message)
        return self.send_batch([message])[0]

    def send_batch(self, messages: list[Message]) -> list[Result]:
        """One Result per message, in order. A wait (circuit open, rate limit, provider throttling) stops the
        batch: what was not sent yet waits with it."""
        provider = self.provider()
        if provider is None:  # SMTP, one by one; a "not now" from the relays holds the rest back with it
            results: list[Result] = []
            for message in messages:
                waiting = results and results[-1].outcome is Outcome.WAIT
                results.append(results[-1] if waiting else SmtpEmail.send(self, message))
            return results
        missing = [s for s in REQUIRED[provider.name] if not self.config.get(s)]
        if missing:
            problem = Result(
                Outcome.PERMANENT, provider.name, error_code="not_configured", detail=f"{', '.join(missing)} not set"
            )
            return [problem] * len(messages)
        sender = Sender.parse(self.config["MAIL_FROM"])
        rate = self.config.get("EMAIL_DOMAIN_RATE") or 0.0
        size = min(provider.batch_limit, max(1, int(rate))) if rate else provider.batch_limit
        results: list[Result] = []
        for start in range(0, len(messages), size):
            part = messages[start : start + size]
            if results and results[-1].outcome is Outcome.WAIT:
                results += [results[-1]] * len(part)
                continue
            results += self._request(provider, part, sender, rate)
        return results

    def _request(self, provider, part: list[Message], sender: Sender, rate: float) -> list[Result]:
        answers: list[Answer] = []

        def call() -> Result:
            answers.append(provider.post(part, sender))
            return answers[0].request

        request = guarded(provider.name, call, rate, bucket=f"email-domain:{sender.domain}", tokens=len(part))
        if not answers:  # not tried: the circuit is open or the domain's rate is spent
            return [request] * len(part)
        return answers[0].results

    def close(self) -> None:
        super().close()
        if self._client is not None:
            self._client.close()
            self._client = None
        self._providers.clear()
