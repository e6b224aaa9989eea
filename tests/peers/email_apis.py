"""SendGrid, Amazon SES v2 and Postmark on loopback: each checks a request as its provider does and answers in its shapes.

Each keeps the mails it accepted with their content substituted per recipient (``mails``: to, subject,
text, html, headers, id), so a test reads what a recipient would get. ``throttle`` answers that many
requests with the provider's rate-limit response; ``fail_with`` answers every request with a given 5xx.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import time
import uuid
from datetime import UTC, datetime

from app.channels import sigv4
from tests.peers.http import HttpPeer

ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class EmailApiPeer(HttpPeer):
    def __init__(self, port: int = 0):
        super().__init__(port)
        self.mails: list[dict] = []
        self.requests: list[dict] = []  # every request that passed auth: {"size": recipients, "at": monotonic}
        self.throttle = 0
        self.fail_with: int | None = None
        self.keep_mails = True  # the benchmark turns it off: only counts
        # Crash tests: the request with this number (1-based) is accepted, then answered only after hold_seconds.
        self.hold_request = 0
        self.hold_seconds = 0.0

    def accepted(self, mails: list[dict]) -> None:
        with self.lock:
            self.requests.append({"size": len(mails), "at": time.monotonic()})
            if self.keep_mails:
                self.mails.extend(mails)
            hold = len(self.requests) == self.hold_request
        if hold:
            time.sleep(self.hold_seconds)

    def take_throttle(self) -> bool:
        with self.lock:
            if self.throttle:
                self.throttle -= 1
                return True
        return False


def _json(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None


class SendGridPeer(EmailApiPeer):
    """``POST /v3/mail/send``: Bearer key, up to 1,000 personalizations, 202 with X-Message-Id."""

    def __init__(self, api_key: str, port: int = 0):
        super().__init__(port)
        self.api_key = api_key
        self._ids = itertools.count(1)

    @staticmethod
    def error(status: int, message: str, field: str | None = None, headers: dict | None = None):
        return status, headers or {}, {"errors": [{"message": message, "field": field, "help": None}]}

    def handle(self, method, path, headers, body):
        if method != "POST" or path != "/v3/mail/send":
            return self.error(404, "Not found")
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.error(401, "The provided authorization grant is invalid, expired, or revoked")
        if self.fail_with:
            return self.fail_with, {}, b""
        if self.take_throttle():
            reset = str(int(time.time()) + 2)
            limits = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
            return self.error(429, "too many requests", headers=limits)
        mail = _json(body) if headers.get("Content-Type", "").startswith("application/json") else None
        if not isinstance(mail, dict):
            return self.error(400, "Bad Request", "body")
        errors = self.validate(mail)
        if errors:
            return 400, {}, {"errors": [{"message": m, "field": f, "help": None} for f, m in errors]}
        content = {part["type"]: part["value"] for part in mail["content"]}
        out = []
        for entry in mail["personalizations"]:
            subs = entry.get("substitutions") or {}
            for to in entry["to"]:
                out.append(
                    {
                        "to": to["email"],
                        "subject": entry.get("subject") or mail.get("subject"),
                        "text": _substitute(content.get("text/plain", ""), subs),
                        "html": _substitute(content["text/html"], subs) if "text/html" in content else None,
                        "headers": entry.get("headers") or {},
                        "id": (entry.get("custom_args") or {}).get("herald_message_id"),
                        "from": mail["from"]["email"],
                    }
                )
        self.accepted(out)
        return 202, {"X-Message-Id": f"sg{next(self._ids):020d}"}, b""

    def validate(self, mail: dict) -> list[tuple[str, str]]:
        errors = []
        personalizations = mail.get("personalizations")
        if not isinstance(personalizations, list) or not 1 <= len(personalizations) <= 1000:
            return [
                (
                    "personalizations",
                    "The personalizations field is required and must have at least one personalization.",
                )
            ]
        if sum(len(p.get("to") or []) for p in personalizations) > 1000:
            return [("personalizations", "The total number of recipients must be less than 1000.")]
        if not ADDRESS.match(str((mail.get("from") or {}).get("email") or "")):
            errors.append(("from.email", "The from email does not contain a valid address."))
        content = mail.get("content") or []
        if (
            not content
            or content[0].get("type") != "text/plain"
            and any(c.get("type") == "text/plain" for c in content)
        ):
            errors.append(("content", "Unless your content is text/plain only, text/plain must be first."))
        for index, entry in enumerate(personalizations):
            if not entry.get("to"):
                errors.append(
                    (f"personalizations.{index}.to", "The to array is required for all personalization objects.")
                )
            for slot, to in enumerate(entry.get("to") or []):
                if not ADDRESS.match(str(to.get("email") or "")):
                    errors.append((f"personalizations.{index}.to.{slot}.email", "Does not contain a valid address."))
            if not (entry.get("subject") or mail.get("subject")):
                errors.append((f"personalizations.{index}.subject", "The subject is required."))
            size = sum(len(k.encode()) + len(str(v).encode()) for k, v in (entry.get("substitutions") or {}).items())
            if size > 10_000:
                errors.append((f"personalizations.{index}.substitutions", "Substitutions may not exceed 10000 bytes."))
        return errors


def _substitute(text: str, substitutions: dict) -> str:
    for tag, value in substitutions.items():
        text = text.replace(tag, value)
    return text


class PostmarkPeer(EmailApiPeer):
    """``POST /email/batch``: X-Postmark-Server-Token, up to 500 messages, one answer per message."""

    def __init__(self, token: str, inactive: set[str] = frozenset(), port: int = 0):
        super().__init__(port)
        self.token, self.inactive = token, set(inactive)

    def handle(self, method, path, headers, body):
        if method != "POST" or path != "/email/batch":
            return 404, {}, {"ErrorCode": 404, "Message": "Not found"}
        if headers.get("X-Postmark-Server-Token") != self.token:
            return 401, {}, {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."}
        if self.fail_with:
            return self.fail_with, {}, {"ErrorCode": 500, "Message": "Internal server error"}
        if self.take_throttle():
            return 429, {}, {"ErrorCode": 429, "Message": "Rate limit exceeded."}
        messages = _json(body) if headers.get("Content-Type", "").startswith("application/json") else None
        if not isinstance(messages, list):
            return 422, {}, {"ErrorCode": 402, "Message": "Received invalid JSON input."}
        if len(messages) > 500:
            return 422, {}, {"ErrorCode": 300, "Message": "Batch limit is 500 messages."}
        answers, out = [], []
        for message in messages:
            to = str(message.get("To") or "")
            if not message.get("From") or not message.get("Subject") or not ADDRESS.match(to):
                answers.append({"ErrorCode": 300, "Message": f"Error parsing 'To': Illegal email address '{to}'."})
            elif to.lower() in self.inactive:
                answers.append(
                    {
                        "ErrorCode": 406,
                        "Message": "You tried to send to recipient(s) that have been marked as inactive.",
                    }
                )
            else:
                mid = str(uuid.uuid4())
                submitted = datetime.now(UTC).isoformat()
                answers.append({"ErrorCode": 0, "Message": "OK", "MessageID": mid, "SubmittedAt": submitted, "To": to})
                out.append(
                    {
                        "to": to,
                        "subject": message["Subject"],
                        "text": message.get("TextBody"),
                        "html": message.get("HtmlBody"),
                        "headers": {h["Name"]: h["Value"] for h in message.get("Headers") or []},
                        "id": mid,
                        "stream": message.get("MessageStream"),
                        "key": (message.get("Metadata") or {}).get("herald_key"),
                    }
                )
        self.accepted(out)
        return 200, {}, answers


class SesPeer(EmailApiPeer):
    """SES v2 ``SendBulkEmail``: SigV4 checked with the account's secret, up to 50 entries, a status per entry."""

    def __init__(self, access_key: str, secret_key: str, region: str, rejected: set[str] = frozenset(), port: int = 0):
        super().__init__(port)
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.rejected = set(rejected)
        self.throttled_addresses: set[str] = set()  # answered ACCOUNT_THROTTLED in an accepted call

    @staticmethod
    def error(status: int, kind: str, message: str):
        return (
            status,
            {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazonaws.sesv2/"},
            {"message": message},
        )

    def handle(self, method, path, headers, body):
        if method != "POST" or path != "/v2/email/outbound-bulk-emails":
            return self.error(404, "NotFoundException", "Not found")
        problem = self.check_signature(headers, body)
        if problem:
            return problem
        if self.fail_with:
            return self.error(self.fail_with, "InternalFailure", "Internal failure")
        if self.take_throttle():
            return self.error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
        request = _json(body)
        entries = (request or {}).get("BulkEmailEntries")
        template = ((request or {}).get("DefaultContent") or {}).get("Template") or {}
        if not isinstance(entries, list) or not 1 <= len(entries) <= 50:
            return self.error(400, "BadRequestException", "BulkEmailEntries must hold 1 to 50 entries")
        if not request.get("FromEmailAddress") or not template.get("TemplateContent"):
            return self.error(400, "BadRequestException", "FromEmailAddress and a template are required")
        default_data = json.loads(template.get("TemplateData") or "{}")
        results, out = [], []
        for entry in entries:
            to = (entry.get("Destination") or {}).get("ToAddresses") or []
            if len(to) != 1 or not ADDRESS.match(to[0]):
                results.append({"Status": "INVALID_PARAMETER", "Error": "Invalid destination"})
                continue
            if to[0].lower() in self.throttled_addresses:
                results.append({"Status": "ACCOUNT_THROTTLED", "Error": "Maximum sending rate exceeded."})
                continue
            if to[0].lower() in self.rejected:
                results.append({"Status": "MESSAGE_REJECTED", "Error": "Email address is on the suppression list"})
                continue
            replacement = (entry.get("ReplacementEmailContent") or {}).get("ReplacementTemplate") or {}
            data = {**default_data, **json.loads(replacement.get("ReplacementTemplateData") or "{}")}
            content = template["TemplateContent"]
            mid = f"0100{uuid.uuid4().hex}-000000"
            results.append({"Status": "SUCCESS", "MessageId": mid})
            out.append(
                {
                    "to": to[0],
                    "subject": _handlebars(content.get("Subject", ""), data),
                    "text": _handlebars(content.get("Text", ""), data),
                    "html": _handlebars(content["Html"], data) if "Html" in content else None,
                    "headers": {h["Name"]: h["Value"] for h in entry.get("ReplacementHeaders") or []},
                    "id": mid,
                }
            )
        self.accepted(out)
        return 200, {}, {"BulkEmailEntryResults": results}

    def check_signature(self, headers, body):
        found = re.fullmatch(
            r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/ses/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
            headers.get("Authorization") or "",
        )
        if not found:
            return self.error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        key, day, region, signed, _signature = found.groups()
        if key != self.access_key:
            return self.error(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        stamp = headers.get("X-Amz-Date") or ""
        try:
            when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return self.error(400, "BadRequestException", "X-Amz-Date is missing or malformed")
        if abs((datetime.now(UTC) - when).total_seconds()) > 300 or day != stamp[:8] or region != self.region:
            return self.error(403, "InvalidSignatureException", "Signature expired or scoped to another region")
        names = signed.split(";")
        if "host" not in names or "x-amz-date" not in names:
            return self.error(403, "InvalidSignatureException", "Host and X-Amz-Date must be signed")
        expected = sigv4.authorization(
            "POST",
            "/v2/email/outbound-bulk-emails",
            "",
            [(name, headers.get(name) or "") for name in names],
            body,
            access_key=key,
            secret_key=self.secret_key,
            region=self.region,
            service="ses",
            when=when,
        )
        if expected != headers.get("Authorization"):
            return self.error(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided.",
            )
        return None


def _handlebars(text: str, data: dict) -> str:
    """SES template variables: ``{{{name}}}`` as is, ``{{name}}`` HTML-escaped (an unknown one renders empty)."""

    def value(found: re.Match) -> str:
        raw, escaped = found.groups()
        return str(data.get(raw, "")) if raw else html.escape(str(data.get(escaped, "")))

    return re.sub(r"\{\{\{\s*(\w+)\s*\}\}\}|\{\{\s*(\w+)\s*\}\}", value, text)
