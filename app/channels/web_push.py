"""Web push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291).

``http_ece`` (RFC 8188, the encoder pywebpush uses) encrypts the body; the
HTTP call goes through one pooled client per adapter instance (per worker), so
10,000 subscriptions on one push service reuse a handful of connections. The
VAPID header is signed here, once per push-service origin (RFC 8292: the
endpoint's *origin*, port included) and reused for hours.

Every endpoint is checked again at send time -- the URL rules applied at
registration, then the addresses its host resolves to *now* -- so a
subscription cannot turn Herald into a proxy into a private network.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from pathlib import Path
from urllib.parse import urlparse

import http_ece
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from app.channels.base import Channel, DeviceTarget, Message, Outcome, Result, register
from app.channels.guard_async import guarded_async, run_and_flush
from app.channels.http import FastClient, HttpError, throttled_or_down, transport_failure
from app.channels.vapid import application_server_key, ensure_vapid_keys
from app.delivery.endpoints import push_endpoint_problem, resolved_address_problem
from app.delivery.fanout import combine

# RFC 8291: one 4096-byte record holds 4096 - 16 (tag) - 1 (padding delimiter) - 86 (header) bytes of payload.
MAX_PAYLOAD_BYTES = 3993
DNS_CACHE_SECONDS = 60
VAPID_LIFETIME = 12 * 3600
VAPID_RENEW_BEFORE = 3600
URGENCY = {"critical": "high", "high": "high", "normal": "normal", "low": "low"}


def payload_for(message: Message) -> dict:
    """What the service worker receives: the notification to show and where a click goes."""
    return {
        "id": message.notification_id,
        "title": message.content.get("title", ""),
        "body": message.content.get("body", ""),
        "category": message.category,
        "url": message.data.get("url"),
        "tag": message.collapse_key,  # the service worker replaces a shown notification with the same tag
        "data": message.data,
    }


def origin_of(url: str) -> str:
    parsed = urlparse(url)
    default = {"https": 443, "http": 80}.get(parsed.scheme)
    port = f":{parsed.port}" if parsed.port and parsed.port != default else ""
    return f"{parsed.scheme}://{parsed.hostname}{port}"


def encrypt_payload(body: bytes, p256dh: str, auth: str) -> bytes:
    """The RFC 8291 ``aes128gcm`` body for one subscription: a fresh sender key pair and salt per message.

    Raises ValueError when the subscription's keys are not base64url or ``p256dh`` is not a P-256 point.
    """
    receiver_key = base64.urlsafe_b64decode(p256dh + "=" * (-len(p256dh) % 4))
    auth_secret = base64.urlsafe_b64decode(auth + "=" * (-len(auth) % 4))
    return http_ece.encrypt(
        body,
        salt=os.urandom(16),
        private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=receiver_key,
        auth_secret=auth_secret,
        version="aes128gcm",
    )


def topic_for(collapse_key: str | None) -> str | None:
    """RFC 8030 Topic (replaces an undelivered message with the same topic): <= 32 URL-safe base64 characters."""
    if not collapse_key:
        return None
    if re.fullmatch(r"[A-Za-z0-9_-]{1,32}", collapse_key):
        return collapse_key
    return base64.urlsafe_b64encode(hashlib.sha256(collapse_key.encode()).digest()[:24]).decode()


@register("web_push")
class WebPushChannel(Channel):
    label = "Web push"
    order, send_order, preference_column = 4, 2, 4
    platforms = frozenset({"web"})
    interrupts = True
    content_fields = ("title", "body")
    field_limits = {"title": 200, "body": 2000}
    template_fallback = "push"  # same title/body shape: one mobile push variant serves both
    tracks_links = True
    # Push services answer in tens of milliseconds: one request at a time would cap a worker at a few dozen
    # sends per second. Sends run on the HTTP loop, this many in flight (the caches only ever gain entries).
    concurrent_sends = 16
    asynchronous = True

    def __init__(self, app_config: dict):
        super().__init__(app_config)
        private_path, _public_path = ensure_vapid_keys(Path(app_config["INSTANCE_PATH"]))
        self.vapid_private = private_path.read_bytes()
        self.vapid_public = application_server_key(app_config["INSTANCE_PATH"])
        self.client = FastClient(app_config, limit=self.concurrent_sends, http2=True)
        self._resolved: dict[str, tuple[float, str | None]] = {}
        self._vapid: dict[str, tuple[float, str]] = {}

    def send(self, message: Message) -> Result:
        return run_and_flush(self.send_async(message))

    async def send_async(self, message: Message) -> Result:
        body = json.dumps(payload_for(message), separators=(",", ":")).encode()
        results = []
        for device in message.devices:
            if len(body) > MAX_PAYLOAD_BYTES:
                result = Result(
                    Outcome.PERMANENT,
                    "webpush",
                    error_code="payload_too_large",
                    detail=f"{len(body)} bytes; web push carries at most {MAX_PAYLOAD_BYTES}",
                )
            else:
                result = await self.send_to(device, body, message)
            results.append((device.id, result))
        return combine("webpush", results)

    async def send_to(self, device: DeviceTarget, body: bytes, message: Message) -> Result:
        private_hosts = self.config.get("WEB_PUSH_PRIVATE_HOSTS", frozenset())
        host = (urlparse(device.token).hostname or "").lower()
        problem = push_endpoint_problem(device.token, private_hosts) or self._address_problem(host, private_hosts)
        if problem:
            return Result(Outcome.TOKEN_GONE, "webpush", error_code="endpoint_refused", detail=problem)
        return await guarded_async(
            f"webpush:{host}",
            lambda: self._post(device, body, message),
            self.config.get("WEB_PUSH_RATE", 0.0),
            bucket="webpush",
        )

    def _address_problem(self, host: str, private_hosts: frozenset[str]) -> str | None:
        """Resolve at most once a minute per host: a campaign to 10,000 subscribers of one push service asks DNS once."""
        cached = self._resolved.get(host)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        problem = resolved_address_problem(host, private_hosts)
        self._resolved[host] = (time.monotonic() + DNS_CACHE_SECONDS, problem)
        return problem

    def vapid_authorization(self, endpoint: str) -> str:
        """``vapid t=<JWT>, k=<public key>`` for the endpoint's origin, signed once and reused until near expiry."""
        origin = origin_of(endpoint)
        cached = self._vapid.get(origin)
        if cached is None or cached[0] - time.time() < VAPID_RENEW_BEFORE:
            expires = time.time() + VAPID_LIFETIME
            subject = self.config.get("WEB_PUSH_SUBJECT", "admin@herald.local")
            token = jwt.encode(
                {"aud": origin, "exp": int(expires), "sub": f"mailto:{subject}"}, self.vapid_private, algorithm="ES256"
            )
            cached = self._vapid[origin] = (expires, f"vapid t={token}, k={self.vapid_public}")
        return cached[1]

    async def _post(self, device: DeviceTarget, body: bytes, message: Message) -> Result:
        provider = f"webpush:{urlparse(device.token).hostname}"
        ttl = self.config.get("WEB_PUSH_TTL", 86400)
        try:
            encrypted = encrypt_payload(body, device.p256dh, device.auth)
        except ValueError as error:  # p256dh is not a P-256 point: this subscription can never be encrypted to
            return Result(Outcome.TOKEN_GONE, provider, error_code="invalid_subscription_keys", detail=str(error)[:500])
        headers = {
            "content-encoding": "aes128gcm",
            "authorization": self.vapid_authorization(device.token),
            "ttl": str(ttl),
            "content-type": "application/octet-stream",
            "urgency": URGENCY.get(message.priority, "normal"),
        }
        topic = topic_for(message.collapse_key)
        if topic:
            headers["topic"] = topic
        try:
            response = await self.client.post(device.token, content=encrypted, headers=headers)
        except HttpError as error:
            return transport_failure(provider, error)
        if response.status_code in (200, 201, 202):
            return Result(Outcome.DISPATCHED, provider, provider_message_id=response.headers.get("location"))
        if response.status_code in (404, 410):
            return Result(
                Outcome.TOKEN_GONE,
                provider,
                error_code=f"http_{response.status_code}",
                detail="subscription expired or unsubscribed",
            )
        if response.status_code == 413:
            return Result(Outcome.PERMANENT, provider, error_code="payload_too_large", detail=response.text[:500])
        return throttled_or_down(provider, response) or Result(
            Outcome.PERMANENT, provider, error_code=f"http_{response.status_code}", detail=response.text[:500]
        )

    def close(self) -> None:
        self.client.close()
