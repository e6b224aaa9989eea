"""SendGrid v3 Mail Send: one ``POST /v3/mail/send`` carries up to 1,000 personalizations.

Bearer auth (``SENDGRID_API_KEY``); 202 on success with no per-recipient answer. The content is the
batch's shared frame with one substitution tag per field; each personalization carries its own ``to``,
``subject``, ``headers`` (List-Unsubscribe), ``substitutions`` and ``custom_args`` (``herald_message_id``,
echoed in the Event Webhook so a bounce settles its delivery). A 400 names the bad personalization in
``errors[].field`` (``personalizations.3.to.0.email``) and refuses the whole request: those messages
fail and the rest are posted again. 429 answers with ``X-RateLimit-Reset`` (epoch seconds).
"""

from __future__ import annotations

import re
import time

import httpx

from app.channels.base import Message, Outcome, Result
from app.channels.email_api.common import (
    Answer,
    Frame,
    Sender,
    dumps,
    frame,
    json_body,
    message_id,
    post_json,
    request_failed,
    text_of,
    throttled,
)

NAME = "sendgrid"
MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000  # per personalization, all its substitutions together
TAGS = {"text": "-herald-text-", "html": "-herald-html-"}
FIELD_INDEX = re.compile(r"^personalizations\.(\d+)\.")
MAX_REPOSTS = 3


class SendGrid:
    name = NAME
    batch_limit = MAX_PERSONALIZATIONS
    requests_per_group = 1

    def __init__(self, config: dict, client: httpx.Client):
        self.config, self.client = config, client

    @property
    def url(self) -> str:
        return self.config["SENDGRID_API_URL"].rstrip("/") + "/v3/mail/send"

    def post(self, messages: list[Message], sender: Sender) -> Answer:
        """Send the batch (split where one recipient's differences pass SendGrid's substitution limit)."""
        request, results = None, []
        for group, fields in fitting_groups(messages):
            if request is not None and request.outcome is not Outcome.DISPATCHED:
                results += [request] * len(group)  # throttled or refused: the rest is not tried
                continue
            answer = self._post_group(group, sender, fields)
            request = answer.request
            results += answer.results
        return Answer(request, results)

    def _post_group(self, messages: list[Message], sender: Sender, fields: dict[str, Frame]) -> Answer:
        """The messages SendGrid names as bad in a 400 fail; the others are posted again."""
        results: dict[int, Result] = {}
        pending = list(range(len(messages)))
        request = None
        for _ in range(MAX_REPOSTS):
            group = [messages[i] for i in pending]
            answer = self._post_once(group, sender, fields if len(group) == len(messages) else None)
            request = answer.request
            retry = []
            for index, result in zip(pending, answer.results, strict=True):
                if result is None:
                    retry.append(index)
                else:
                    results[index] = result
            pending = retry
            if not pending:
                break
        for index in pending:
            results[index] = Result(Outcome.TRANSIENT, NAME, error_code="sendgrid_400_repost", detail="refused again")
        return Answer(request, [results[i] for i in range(len(messages))])

    def _post_once(self, messages: list[Message], sender: Sender, fields: dict[str, Frame] | None) -> Answer:
        """One request; a message left as None was not named in a 400 that refused others (post it again)."""
        ids = [message_id(m, sender) for m in messages]
        body = dumps(payload(messages, sender, fields, ids))
        response = post_json(
            NAME, self.client, self.url, body, {"Authorization": f"Bearer {self.config['SENDGRID_API_KEY']}"}
        )
        if isinstance(response, Result):
            return Answer.whole(response, len(messages))
        if response.status_code == 202:
            ok = [Result(Outcome.DISPATCHED, NAME, provider_message_id=i) for i in ids]
            return Answer(ok[0], ok)
        errors = (json_body(response) or {}).get("errors") or []
        detail = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors if isinstance(e, dict))
        detail = detail or response.text
        if response.status_code == 429:
            reset = response.headers.get("X-RateLimit-Reset")
            seconds = max(1.0, float(reset) - time.time()) if reset and reset.isdigit() else None
            return Answer.whole(throttled(NAME, response, "sendgrid_429", seconds), len(messages))
        named = _named_personalizations(errors)
        if response.status_code == 400 and named and len(named) < len(messages):
            failed = {
                i: Result(Outcome.PERMANENT, NAME, error_code="sendgrid_400", detail=_errors_for(errors, i))
                for i in named
                if i < len(messages)
            }
            request = Result(Outcome.DISPATCHED, NAME)  # the provider is fine: the batch held bad recipients
            return Answer(request, [failed.get(i) for i in range(len(messages))])
        return Answer.whole(request_failed(NAME, response, f"sendgrid_{response.status_code}", detail), len(messages))


def _named_personalizations(errors: list) -> set[int]:
    found = set()
    for error in errors:
        match = FIELD_INDEX.match(str((error or {}).get("field") or ""))
        if match:
            found.add(int(match.group(1)))
    return found


def _errors_for(errors: list, index: int) -> str:
    prefix = f"personalizations.{index}."
    return "; ".join(
        f"{e['field']}: {e.get('message')}" for e in errors if str(e.get("field") or "").startswith(prefix)
    )


def frames(messages: list[Message]) -> dict[str, Frame]:
    """The batch's text and HTML parts, each as its shared frame and per-recipient parts."""
    fields = {"text": frame([text_of(m) for m in messages])}
    if any(m.content.get("html") for m in messages):
        fields["html"] = frame([m.content.get("html") or "" for m in messages])
    return fields


def payload(
    messages: list[Message], sender: Sender, fields: dict[str, Frame] | None = None, ids: list[str] | None = None
) -> dict:
    """The Mail Send body: shared content once, each recipient's differences in its personalization."""
    fields = fields or frames(messages)
    ids = ids or [message_id(m, sender) for m in messages]
    personalizations = []
    for index, message in enumerate(messages):
        entry = {
            "to": [{"email": message.address}],
            "subject": message.content["subject"],
            "custom_args": {"herald_message_id": ids[index]},
        }
        if message.headers:
            entry["headers"] = dict(message.headers)
        substitutions = {TAGS[f]: found.parts[index] for f, found in fields.items() if not found.shared}
        if substitutions:
            entry["substitutions"] = substitutions
        personalizations.append(entry)
    content = [{"type": "text/plain", "value": _content(fields["text"], TAGS["text"])}]
    if "html" in fields:
        content.append({"type": "text/html", "value": _content(fields["html"], TAGS["html"])})
    sender_field = {"email": sender.email, **({"name": sender.name} if sender.name else {})}
    return {"personalizations": personalizations, "from": sender_field, "content": content}


def _content(found: Frame, tag: str) -> str:
    return found.prefix + found.parts[0] + found.suffix if found.shared else found.prefix + tag + found.suffix


def fitting_groups(messages: list[Message]) -> list[tuple[list[Message], dict[str, Frame]]]:
    """The batch as one request, or halves of it until each fits (a single message always does)."""
    fields = frames(messages)
    if len(messages) == 1 or fits(fields, len(messages)):
        return [(messages, fields)]
    half = len(messages) // 2
    return fitting_groups(messages[:half]) + fitting_groups(messages[half:])


def fits(fields: dict[str, Frame], count: int) -> bool:
    """Whether every personalization's substitutions (tags and values) stay within SendGrid's 10,000 bytes."""
    personal = [(TAGS[name], found) for name, found in fields.items() if not found.shared]
    return all(
        sum(len(tag) + len(found.parts[i].encode()) for tag, found in personal) <= MAX_SUBSTITUTION_BYTES
        for i in range(count)
    )
