"""Standard Webhooks signing: ``whsec_`` secrets and ``v1,<base64 HMAC-SHA256 of id.timestamp.body>`` (no I/O)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
SECRET_BYTES = 24
# Receivers refuse timestamps further off than this (the spec's reference libraries use 5 minutes).
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``{msg_id}.{timestamp}.{body}``."""
    digest = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_in_use: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one attempt; during a rotation both secrets sign (space-separated, as the spec allows)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(secret, msg_id, timestamp, body) for secret in secrets_in_use),
        "content-type": "application/json",
    }


def verify(secret: str, received: dict[str, str], body: bytes, now: int) -> bool:
    """True when ``received`` headers carry a signature of ``body`` by ``secret`` within the tolerance."""
    lowered = {name.lower(): value for name, value in received.items()}
    msg_id, stamp, signed = (lowered.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp.isdigit() and signed) or abs(now - int(stamp)) > TOLERANCE_SECONDS:
        return False
    expected = signature(secret, msg_id, int(stamp), body)
    return any(hmac.compare_digest(expected, given) for given in signed.split())
