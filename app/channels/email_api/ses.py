"""Amazon SES v2 ``SendBulkEmail``: one SigV4-signed ``POST /v2/email/outbound-bulk-emails``, 50 destinations.

The batch's shared frame is an inline template (``DefaultContent.Template.TemplateContent``) and each
destination's differences its ``ReplacementTemplateData``; List-Unsubscribe goes in ``ReplacementHeaders``.
SES answers 200 with ``BulkEmailEntryResults`` in order (``Status`` SUCCESS and a ``MessageId``, which the
SNS bounce notification names later, or why not). A refused request carries ``x-amzn-ErrorType``:
``TooManyRequestsException`` / ``ThrottlingException`` (429/400, wait), an auth error (403), a 5xx.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from app.channels import sigv4
from app.channels.base import Message, Outcome, Result
from app.channels.email_api.common import (
    Answer,
    Frame,
    Sender,
    dumps,
    frame,
    json_body,
    request_failed,
    text_of,
    throttled,
)
from app.channels.http import transport_failure

NAME = "ses"
MAX_DESTINATIONS = 50
PATH = "/v2/email/outbound-bulk-emails"
THROTTLING = {"TooManyRequestsException", "ThrottlingException", "Throttling", "LimitExceededException"}
# Per-destination statuses: the account may not send now (wait); the rest are about this message or the setup.
WAIT_STATUSES = {"ACCOUNT_THROTTLED": 1.0, "ACCOUNT_DAILY_QUOTA_EXCEEDED": 3600.0}
RETRY_STATUSES = {"TRANSIENT_FAILURE", "FAILED"}
SETUP_STATUSES = {
    "MAIL_FROM_DOMAIN_NOT_VERIFIED",
    "CONFIGURATION_SET_DOES_NOT_EXIST",
    "TEMPLATE_DOES_NOT_EXIST",
    "ACCOUNT_SUSPENDED",
    "ACCOUNT_SENDING_PAUSED",
    "CONFIGURATION_SET_SENDING_PAUSED",
    "INVALID_SENDING_POOL_NAME",
}
FIELDS = (("Subject", "s", "subject"), ("Text", "t", "text"), ("Html", "h", "html"))


class Ses:
    name = NAME
    batch_limit = MAX_DESTINATIONS
    requests_per_group = 10

    def __init__(self, config: dict, client: httpx.Client):
        self.config, self.client = config, client

    @property
    def endpoint(self) -> str:
        return (
            self.config.get("SES_ENDPOINT_URL") or f"https://email.{self.config['SES_REGION']}.amazonaws.com"
        ).rstrip("/")

    def post(self, messages: list[Message], sender: Sender) -> Answer:
        body = dumps(payload(messages, self.config["MAIL_FROM"], self.config.get("SES_CONFIGURATION_SET")))
        try:
            response = self.client.post(self.endpoint + PATH, content=body, headers=self.signed_headers(body))
        except httpx.HTTPError as error:
            return Answer.whole(transport_failure(NAME, error), len(messages))
        kind = response.headers.get("x-amzn-ErrorType", "").split(":")[0]
        detail = str((json_body(response) or {}).get("message") or response.text) if response.status_code != 200 else ""
        if response.status_code == 429 or kind in THROTTLING:
            return Answer.whole(throttled(NAME, response, f"ses_{kind or 429}"), len(messages))
        if response.status_code != 200:
            return Answer.whole(
                request_failed(NAME, response, f"ses_{kind or response.status_code}", detail), len(messages)
            )
        entries = (json_body(response) or {}).get("BulkEmailEntryResults") or []
        if len(entries) != len(messages):
            problem = Result(Outcome.TRANSIENT, NAME, error_code="ses_answer", detail=response.text[:500])
            return Answer.whole(problem, len(messages))
        return Answer(Result(Outcome.DISPATCHED, NAME), [_result(entry) for entry in entries])

    def signed_headers(self, body: bytes) -> dict[str, str]:
        now = datetime.now(UTC)
        host = urlsplit(self.endpoint).netloc
        headers = [("Host", host), ("Content-Type", "application/json"), ("X-Amz-Date", sigv4.amz_date(now))]
        authorization = sigv4.authorization(
            "POST",
            PATH,
            "",
            headers,
            body,
            access_key=self.config["SES_ACCESS_KEY_ID"],
            secret_key=self.config["SES_SECRET_ACCESS_KEY"],
            region=self.config["SES_REGION"],
            service="ses",
            when=now,
        )
        return dict(headers[1:]) | {"Authorization": authorization}


def _template_field(found: Frame, variable: str) -> str:
    return (
        found.prefix + found.parts[0] + found.suffix
        if found.shared
        else found.prefix + "{{{" + variable + "}}}" + found.suffix
    )


def _frame_for_template(values: list[str]) -> Frame:
    """SES reads ``{{...}}`` in the template as its own: shared text holding braces is sent per destination."""
    found = frame(values)
    if "{{" in found.prefix + found.suffix or (found.shared and "{{" in values[0]):
        return Frame("", "", tuple(values), whole_per_recipient=True)
    return found


def payload(messages: list[Message], mail_from: str, configuration_set: str | None) -> dict:
    frames = {}
    for field, variable, content_key in FIELDS:
        if field == "Html" and not any(m.content.get("html") for m in messages):
            continue
        values = [text_of(m) if content_key == "text" else m.content.get(content_key) or "" for m in messages]
        frames[(field, variable)] = _frame_for_template(values)
    entries = []
    for index, message in enumerate(messages):
        data = {variable: found.parts[index] for (_f, variable), found in frames.items() if not found.shared}
        entry = {
            "Destination": {"ToAddresses": [message.address]},
            "ReplacementEmailContent": {"ReplacementTemplate": {"ReplacementTemplateData": json.dumps(data)}},
        }
        if message.headers:
            entry["ReplacementHeaders"] = [{"Name": n, "Value": v} for n, v in message.headers.items()]
        entries.append(entry)
    content = {field: _template_field(found, variable) for (field, variable), found in frames.items()}
    body = {
        "FromEmailAddress": mail_from,
        "DefaultContent": {"Template": {"TemplateContent": content, "TemplateData": "{}"}},
        "BulkEmailEntries": entries,
    }
    if configuration_set:
        body["ConfigurationSetName"] = configuration_set
    return body


def _result(entry: dict) -> Result:
    status = str(entry.get("Status") or "")
    detail = str(entry.get("Error") or status)[:500]
    if status == "SUCCESS" and entry.get("MessageId"):
        return Result(Outcome.DISPATCHED, NAME, provider_message_id=str(entry["MessageId"]))
    code = f"ses_{status.lower() or 'unknown'}"
    if status in WAIT_STATUSES:
        return Result(Outcome.WAIT, NAME, error_code=code, detail=detail, retry_after=WAIT_STATUSES[status])
    if status in RETRY_STATUSES:
        return Result(Outcome.TRANSIENT, NAME, error_code=code, detail=detail)
    return Result(Outcome.PERMANENT, NAME, error_code=code, detail=detail, provider_fault=status in SETUP_STATUSES)
