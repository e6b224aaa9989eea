"""FCM HTTP v1 and Google's OAuth2 token endpoint on loopback.

The token endpoint verifies the service account's signed JWT grant (RS256,
issuer = the account's e-mail, audience = Google's token URI, which
google-auth always names whatever ``token_uri`` it posts to) with the account's
public key and issues a bearer token; the send endpoint accepts only tokens it
issued, checks ``/v1/projects/<project>/messages:send`` and the v1 message
shape, and answers with FCM's real success and error bodies.
"""

from __future__ import annotations

import itertools
import json
import secrets
from urllib.parse import parse_qsl

import jwt

from tests.peers.http import HttpPeer

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def fcm_error(code: int, status: str, error_code: str, message: str, field: str | None = None) -> dict:
    details = [{"@type": FCM_ERROR, "errorCode": error_code}]
    if field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        )
    return {"error": {"code": code, "message": message, "status": status, "details": details}}


class FcmService(HttpPeer):
    def __init__(self, project: str, client_email: str, public_key):
        super().__init__()
        self.project, self.client_email, self.public_key = project, client_email, public_key
        self.issued: set[str] = set()
        self.token_requests = 0
        self.messages: list[dict] = []
        self.unregistered: set[str] = set()
        self.invalid: set[str] = set()
        self.fail_next: list[tuple[int, dict, dict]] = []
        self._ids = itertools.count(1)

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def handle(self, method, path, headers, body):
        if path == "/token":
            return self.token(body)
        if method != "POST" or path != f"/v1/projects/{self.project}/messages:send":
            return 404, {}, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
        bearer = headers.get("Authorization", "")
        if not bearer.startswith("Bearer ") or bearer[len("Bearer ") :] not in self.issued:
            return (
                401,
                {},
                {
                    "error": {
                        "code": 401,
                        "message": "Request had invalid authentication credentials.",
                        "status": "UNAUTHENTICATED",
                    }
                },
            )
        message = json.loads(body).get("message", {})
        token = message.get("token")
        if (
            not token
            or not isinstance(message.get("data", {}), dict)
            or not all(isinstance(v, str) for v in message.get("data", {}).values())
        ):
            return 400, {}, fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid message", "message")
        with self.lock:
            if self.fail_next:
                return self.fail_next.pop(0)
        if token in self.unregistered:
            return 404, {}, fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
        if token in self.invalid:
            return (
                400,
                {},
                fcm_error(
                    400,
                    "INVALID_ARGUMENT",
                    "INVALID_ARGUMENT",
                    "The registration token is not a valid FCM registration token",
                    "message.token",
                ),
            )
        name = f"projects/{self.project}/messages/0:{next(self._ids)}%{secrets.token_hex(8)}"
        with self.lock:
            self.messages.append(message)
        return 200, {}, {"name": name}

    def token(self, body: bytes):
        form = dict(parse_qsl(body.decode()))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {}, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(
                form.get("assertion", ""), self.public_key, algorithms=["RS256"], audience=GOOGLE_TOKEN_AUDIENCE
            )
        except jwt.PyJWTError as error:
            return 400, {}, {"error": "invalid_grant", "error_description": str(error)}
        if claims.get("iss") != self.client_email or "firebase.messaging" not in claims.get("scope", ""):
            return 400, {}, {"error": "invalid_grant", "error_description": "bad issuer or scope"}
        access = "ya29." + secrets.token_urlsafe(32)
        with self.lock:
            self.issued.add(access)
            self.token_requests += 1
        return 200, {}, {"access_token": access, "expires_in": 3599, "token_type": "Bearer"}
