"""Postmark's batch endpoint: ``POST /email/batch`` with up to 500 messages, ``X-Postmark-Server-Token``.

Postmark answers 200 with one entry per message, in order: ``ErrorCode`` 0 and a ``MessageID`` when
accepted, else the code and its ``Message`` (406: the address is inactive -- it bounced or complained).
A refused request as a whole answers 401 (ErrorCode 10, a bad token), 422 with an ``ErrorCode``, 429
(too many requests) or 5xx. Marketing goes through the broadcast message stream.
"""

from __future__ import annotations

import httpx

from app.channels.base import Message, Outcome, Result
from app.channels.email_api.common import (
    Answer,
    Sender,
    dumps,
    json_body,
    post_json,
    request_failed,
    text_of,
    throttled,
)

NAME = "postmark"
MAX_MESSAGES = 500
INACTIVE_RECIPIENT = 406  # hard bounce, spam complaint or manual suppression: never again
INVALID_REQUEST = 300


class Postmark:
    name = NAME
    batch_limit = MAX_MESSAGES
    requests_per_group = 1

    def __init__(self, config: dict, client: httpx.Client):
        self.config, self.client = config, client

    def post(self, messages: list[Message], sender: Sender) -> Answer:
        url = self.config["POSTMARK_API_URL"].rstrip("/") + "/email/batch"
        body = dumps([self._entry(m) for m in messages])
        headers = {"Accept": "application/json", "X-Postmark-Server-Token": self.config["POSTMARK_SERVER_TOKEN"]}
        response = post_json(NAME, self.client, url, body, headers)
        if isinstance(response, Result):
            return Answer.whole(response, len(messages))
        answer = json_body(response)
        if response.status_code == 429:
            return Answer.whole(throttled(NAME, response, "postmark_429"), len(messages))
        if response.status_code != 200 or not isinstance(answer, list) or len(answer) != len(messages):
            code = answer.get("ErrorCode") if isinstance(answer, dict) else None
            detail = answer.get("Message") if isinstance(answer, dict) else response.text
            return Answer.whole(
                request_failed(
                    NAME, response, f"postmark_{code if code is not None else response.status_code}", str(detail)
                ),
                len(messages),
            )
        results = [_result(entry) for entry in answer]
        return Answer(Result(Outcome.DISPATCHED, NAME), results)

    def _entry(self, message: Message) -> dict:
        stream = "POSTMARK_BROADCAST_STREAM" if message.notification_type == "marketing" else "POSTMARK_STREAM"
        entry = {
            "From": self.config["MAIL_FROM"],
            "To": message.address,
            "Subject": message.content["subject"],
            "TextBody": text_of(message),
            "MessageStream": self.config[stream],
            "Metadata": {"herald_key": message.idempotency_key},
        }
        if message.content.get("html"):
            entry["HtmlBody"] = message.content["html"]
        if message.headers:
            entry["Headers"] = [{"Name": name, "Value": value} for name, value in message.headers.items()]
        return entry


def _result(entry) -> Result:
    if not isinstance(entry, dict):
        return Result(Outcome.TRANSIENT, NAME, error_code="postmark_answer", detail=repr(entry)[:200])
    code = entry.get("ErrorCode")
    if code == 0 and entry.get("MessageID"):
        return Result(Outcome.DISPATCHED, NAME, provider_message_id=str(entry["MessageID"]))
    outcome = Outcome.TOKEN_GONE if code == INACTIVE_RECIPIENT else Outcome.PERMANENT
    return Result(outcome, NAME, error_code=f"postmark_{code}", detail=str(entry.get("Message"))[:500])
