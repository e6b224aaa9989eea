"""Apple Push Notification service over HTTP/2 with token-based (JWT, ES256) authentication.

``POST {APNS_BASE}/3/device/{token}``. The provider token is a JWT signed
with the team's .p8 key; Apple rejects one older than an hour and throttles
one renewed more often than every 20 minutes, so it is cached and renewed
after ``JWT_REFRESH_SECONDS``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import jwt

from app.channels.base import DeviceTarget, Message, Outcome, Result
from app.channels.guard_async import guarded_async
from app.channels.http import FastClient, HttpError, HttpResponse, retry_after, transport_failure

MAX_PAYLOAD_BYTES = 4096
JWT_REFRESH_SECONDS = 50 * 60
# Apple's reasons that mean this token will never work for this app again.
DEAD_TOKEN_REASONS = {"Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic", "ExpiredToken"}
PROVIDER_TOKEN_REASONS = {"ExpiredProviderToken", "InvalidProviderToken", "MissingProviderToken"}


def apns_payload(message: Message) -> dict:
    alert = {key: message.content[key] for key in ("title", "body") if message.content.get(key)}
    aps: dict = {"alert": alert, "sound": "default"} if alert else {"content-available": 1}
    aps["thread-id"] = message.category
    return {"aps": aps, "id": message.notification_id, "url": message.data.get("url"), "data": message.data}


def apns_headers(message: Message, device_id: int, topic: str, background: bool) -> dict[str, str]:
    headers = {
        "apns-topic": topic,
        "apns-push-type": "background" if background else "alert",
        # Apple requires priority 5 for background pushes.
        "apns-priority": "10" if message.priority in ("high", "critical") and not background else "5",
        # Stable across retries of this delivery to this device, so Apple's logs and ours line up.
        "apns-id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{message.idempotency_key}/{device_id}")),
    }
    if message.collapse_key:
        headers["apns-collapse-id"] = message.collapse_key.encode()[:64].decode(errors="ignore")
    return headers


class ApnsClient:
    """Sends to iOS devices on the worker's HTTP loop: libcurl multiplexes them over one HTTP/2 connection."""

    name = "apns"

    def __init__(self, config: dict, limit: int = 16):
        self.config = config
        base = config["APNS_BASE"]
        self.client = FastClient(config, limit=limit, http2=True, prior_knowledge=base.startswith("http://"))
        self._jwt: tuple[float, str] | None = None
        self._lock = threading.Lock()

    def provider_token(self) -> str:
        with self._lock:
            if self._jwt is None or time.time() - self._jwt[0] >= JWT_REFRESH_SECONDS:
                issued = time.time()
                key = Path(self.config["APNS_KEY_FILE"]).read_text()
                token = jwt.encode(
                    {"iss": self.config["APNS_TEAM_ID"], "iat": int(issued)},
                    key,
                    algorithm="ES256",
                    headers={"kid": self.config["APNS_KEY_ID"]},
                )
                self._jwt = (issued, token)
            return self._jwt[1]

    async def send(self, device: DeviceTarget, message: Message) -> Result:
        if not all(self.config.get(s) for s in ("APNS_TEAM_ID", "APNS_KEY_ID", "APNS_KEY_FILE", "APNS_TOPIC")):
            return Result(
                Outcome.PERMANENT, self.name, error_code="not_configured", detail="APNS_* settings are not set"
            )
        payload = apns_payload(message)
        body = json.dumps(payload, separators=(",", ":")).encode()
        if len(body) > MAX_PAYLOAD_BYTES:
            return Result(
                Outcome.PERMANENT,
                self.name,
                error_code="payload_too_large",
                detail=f"{len(body)} bytes; APNs takes at most {MAX_PAYLOAD_BYTES}",
            )
        headers = apns_headers(message, device.id, self.config["APNS_TOPIC"], background="alert" not in payload["aps"])
        return await guarded_async(
            self.name, lambda: self._post(device.token, body, headers), self.config.get("APNS_RATE", 0.0)
        )

    async def _post(self, token: str, body: bytes, headers: dict[str, str]) -> Result:
        url = f"{self.config['APNS_BASE']}/3/device/{token}"
        try:
            response = await self.client.post(
                url, content=body, headers={**headers, "authorization": f"bearer {self.provider_token()}"}
            )
        except HttpError as error:
            return transport_failure(self.name, error)
        if response.status_code == 200:
            return Result(Outcome.DISPATCHED, self.name, provider_message_id=response.headers.get("apns-id"))
        reason = _reason(response)
        detail = f"{response.status_code} {reason}"
        if response.status_code == 410 or reason in DEAD_TOKEN_REASONS:
            return Result(Outcome.TOKEN_GONE, self.name, error_code=reason or "Unregistered", detail=detail)
        if response.status_code == 429 or response.status_code >= 500:
            return Result(
                Outcome.TRANSIENT,
                self.name,
                error_code=reason or f"http_{response.status_code}",
                detail=detail,
                retry_after=retry_after(response),
                provider_fault=response.status_code >= 500,
            )
        if reason in PROVIDER_TOKEN_REASONS:
            self._jwt = None  # the next try signs a fresh one
            return Result(Outcome.TRANSIENT, self.name, error_code=reason, detail=detail, provider_fault=True)
        if response.status_code == 413:
            return Result(Outcome.PERMANENT, self.name, error_code="payload_too_large", detail=detail)
        return Result(Outcome.PERMANENT, self.name, error_code=reason or f"http_{response.status_code}", detail=detail)

    def close(self) -> None:
        self.client.close()


def _reason(response: HttpResponse) -> str | None:
    try:
        return response.json().get("reason")
    except (ValueError, AttributeError):
        return None
