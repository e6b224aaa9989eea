"""SMS through Twilio's Messages API, failing over from the main account to a fallback account.

``POST {TWILIO_API_BASE}/2010-04-01/Accounts/{AccountSid}/Messages.json``,
form-encoded, HTTP basic auth ``AccountSid:AuthToken``. Twilio answers 201
with the message resource; its ``sid`` is what the status callback
(``/webhooks/sms/status``) names later. Twilio's Messages API takes no
idempotency key, so a send whose answer was lost can be sent twice; the
breaker and short timeouts keep that window small.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.channels.base import Channel, Message, Outcome, Result, register
from app.channels.guard_async import first_available_async, run_and_flush
from app.channels.http import FastClient, HttpError, HttpResponse, throttled_or_down, transport_failure
from app.delivery.sms import count_segments, to_e164

MAX_SEGMENTS = 10
# Twilio error codes (https://www.twilio.com/docs/api/errors) that mean the number can never get SMS from us.
DEAD_NUMBER_CODES = {21211, 21214, 21610, 21614}


@dataclass(frozen=True)
class TwilioAccount:
    name: str
    sid: str
    token: str
    sender: str | None
    messaging_service: str | None = None


def accounts(config: dict) -> list[TwilioAccount]:
    """The configured accounts, main first; an account without a sender is not usable."""
    found = []
    for name, prefix in (("twilio", "TWILIO_"), ("twilio-fallback", "TWILIO_FALLBACK_")):
        sid, token = config.get(prefix + "ACCOUNT_SID"), config.get(prefix + "AUTH_TOKEN")
        sender, service = config.get(prefix + "FROM"), config.get(prefix + "MESSAGING_SERVICE_SID")
        if sid and token and (sender or service):
            found.append(TwilioAccount(name, sid, token, sender, service))
    return found


@register("sms")
class TwilioSms(Channel):
    label = "SMS"
    order, send_order, preference_column = 2, 3, 2
    address_field = "phone"
    interrupts = True
    marketing_needs_opt_in = True
    content_fields = ("text",)
    field_limits = {"text": 1600}  # ten concatenated segments
    billed_in_segments = True
    asynchronous = True
    # Requests in flight at once per worker (each account's token bucket still paces what it sends).
    concurrent_sends = 16

    def __init__(self, app_config: dict):
        super().__init__(app_config)
        self.client = FastClient(app_config, limit=self.concurrent_sends)

    def send(self, message: Message) -> Result:
        return run_and_flush(self.send_async(message))

    async def send_async(self, message: Message) -> Result:
        configured = accounts(self.config)
        if not configured:
            return Result(
                Outcome.PERMANENT, "twilio", error_code="not_configured", detail="TWILIO_* settings are not set"
            )
        number = to_e164(message.address or "")
        if number is None:
            return Result(
                Outcome.TOKEN_GONE, "twilio", error_code="invalid_number", detail=f"{message.address!r} is not E.164"
            )
        text = message.content["text"]
        segments = count_segments(text)
        if segments.count > MAX_SEGMENTS:
            return Result(
                Outcome.PERMANENT,
                "twilio",
                error_code="too_many_segments",
                detail=f"{segments.count} {segments.encoding} segments; at most {MAX_SEGMENTS}",
            )
        return await first_available_async(
            (
                account.name,
                (lambda account=account: self._post(account, number, text)),
                self.config.get("SMS_RATE", 1.0),
            )
            for account in configured
        )

    async def _post(self, account: TwilioAccount, number: str, text: str) -> Result:
        form = {"To": number, "Body": text, "StatusCallback": f"{self.config['BASE_URL']}/webhooks/sms/status"}
        if account.messaging_service:
            form["MessagingServiceSid"] = account.messaging_service
        else:
            form["From"] = account.sender
        url = f"{self.config['TWILIO_API_BASE']}/2010-04-01/Accounts/{account.sid}/Messages.json"
        try:
            response = await self.client.post(url, form=form, auth=(account.sid, account.token))
        except HttpError as error:
            return transport_failure(account.name, error)
        if response.status_code in (200, 201):
            return Result(Outcome.DISPATCHED, account.name, provider_message_id=response.json()["sid"])
        failure = throttled_or_down(account.name, response)
        if failure:
            return failure
        error = _error_body(response)
        code = error.get("code")
        outcome = Outcome.TOKEN_GONE if code in DEAD_NUMBER_CODES else Outcome.PERMANENT
        return Result(
            outcome,
            account.name,
            error_code=f"twilio_{code or response.status_code}",
            detail=str(error.get("message") or response.text)[:500],
            provider_fault=response.status_code in (401, 403),
        )

    def close(self) -> None:
        self.client.close()


def _error_body(response: HttpResponse) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
