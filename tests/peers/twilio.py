"""A Twilio Messages API on loopback that checks what Twilio checks and answers in Twilio's shapes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import time
from urllib.parse import parse_qsl

from tests.peers.http import HttpPeer


def sign(url: str, params: dict[str, str], auth_token: str) -> str:
    """How Twilio signs a webhook: HMAC-SHA1(url + name1 + value1 + ..., sorted by name), base64."""
    data = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class TwilioApi(HttpPeer):
    def __init__(self, accounts: dict[str, str], port: int = 0):
        super().__init__(port)
        self.accounts = accounts  # AccountSid -> AuthToken
        self.messages: list[dict] = []  # every accepted form, with the account and arrival time
        self.fail_next: list[tuple[int, dict, dict]] = []  # (status, headers, body) answered before accepting
        self.fail_account: dict[str, tuple[int, dict]] = {}  # AccountSid -> (status, body), every time
        self._sids = itertools.count(1)

    def handle(self, method, path, headers, body):
        parts = path.split("/")
        if (
            method != "POST"
            or len(parts) != 5
            or parts[1:3] != ["2010-04-01", "Accounts"]
            or parts[4] != "Messages.json"
        ):
            return 404, {}, {"code": 20404, "message": "The requested resource was not found", "status": 404}
        sid = parts[3]
        expected = "Basic " + base64.b64encode(f"{sid}:{self.accounts.get(sid, '')}".encode()).decode()
        if sid not in self.accounts or headers.get("Authorization") != expected:
            return (
                401,
                {},
                {
                    "code": 20003,
                    "message": "Authenticate",
                    "more_info": "https://www.twilio.com/docs/errors/20003",
                    "status": 401,
                },
            )
        if headers.get("Content-Type") != "application/x-www-form-urlencoded":
            return 400, {}, {"code": 20001, "message": "form body expected", "status": 400}
        form = dict(parse_qsl(body.decode()))
        if sid in self.fail_account:
            status, answer = self.fail_account[sid]
            return status, {}, answer
        if self.fail_next:
            return self.fail_next.pop(0)
        if (
            not form.get("To", "").startswith("+")
            or not form.get("Body")
            or not (form.get("From") or form.get("MessagingServiceSid"))
        ):
            return 400, {}, {"code": 21604, "message": "A 'To' phone number is required.", "status": 400}
        message_sid = f"SM{next(self._sids):032x}"
        with self.lock:
            self.messages.append({**form, "AccountSid": sid, "sid": message_sid, "at": time.monotonic()})
        return (
            201,
            {},
            {
                "sid": message_sid,
                "account_sid": sid,
                "to": form["To"],
                "from": form.get("From"),
                "body": form["Body"],
                "status": "queued",
                "num_segments": "1",
                "error_code": None,
                "uri": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json",
            },
        )
