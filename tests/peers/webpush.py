"""A web-push service on loopback that holds each subscription's private key and decrypts what arrives.

It checks what a real push service checks -- the VAPID JWT (ES256, signed by
the key in ``k=``, audience = the endpoint's origin, not expired) and the
``aes128gcm`` content encoding -- then decrypts the body as the browser
would (RFC 8291), so a test asserts the payload the user would see.

Run it alone for benchmarks: ``python -m tests.peers.webpush PORT``.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import sys
import time

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tests.peers.http import HttpPeer


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


class Subscription:
    """What a browser keeps for one push subscription: a P-256 key pair and a 16-byte auth secret."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.public_raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.auth_secret = os.urandom(16)

    def to_json(self) -> dict:
        """``PushSubscription.toJSON()``, as the browser posts it to Herald."""
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64url(self.public_raw), "auth": b64url(self.auth_secret)},
        }

    def decrypt(self, body: bytes) -> bytes:
        """RFC 8291 / RFC 8188 aes128gcm, a single record."""
        salt, record_size, id_length = body[:16], struct.unpack("!L", body[16:20])[0], body[20]
        sender_raw = body[21 : 21 + id_length]
        ciphertext = body[21 + id_length :]
        assert record_size >= len(ciphertext), "one record expected"
        sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_raw)
        shared = self.private_key.exchange(ec.ECDH(), sender)
        ikm = hkdf(self.auth_secret, shared, b"WebPush: info\x00" + self.public_raw + sender_raw, 32)
        key = hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
        nonce = hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
        padded = AESGCM(key).decrypt(nonce, ciphertext, None).rstrip(b"\x00")
        assert padded.endswith(b"\x02"), "last record must end with the 0x02 delimiter"
        return padded[:-1]


def verify_vapid(authorization: str, endpoint_origin: str) -> dict:
    """Check ``vapid t=<jwt>, k=<public key>``; returns the JWT claims or raises."""
    assert authorization.startswith("vapid "), authorization
    parts = dict(part.strip().split("=", 1) for part in authorization[len("vapid ") :].split(","))
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
    claims = jwt.decode(parts["t"], public, algorithms=["ES256"], audience=endpoint_origin)
    assert claims["sub"].startswith("mailto:") and claims["exp"] > time.time()
    return {**claims, "k": parts["k"]}


class WebPushService(HttpPeer):
    def __init__(self, port: int = 0, decrypt: bool = True):
        super().__init__(port)
        self.subscriptions: dict[str, Subscription] = {}
        self.received: list[dict] = []
        self.status_for: dict[str, int] = {}  # path -> status to answer (e.g. 410)
        self.decrypt = decrypt
        self.count = 0

    def subscribe(self, name: str) -> Subscription:
        subscription = Subscription(f"{self.url}/push/{name}")
        self.subscriptions[f"/push/{name}"] = subscription
        return subscription

    def handle(self, method, path, headers, body):
        if method == "GET" and path == "/stats":
            return 200, {}, {"count": self.count, "connections": self.connections}
        if path in self.status_for:
            return self.status_for[path], {}, b""
        subscription = self.subscriptions.get(path)
        if subscription is None and path.startswith("/push/") and not self.decrypt:
            with self.lock:
                self.count += 1
            return 201, {"Location": f"{self.url}/message/{self.count}"}, b""
        if subscription is None:
            return 404, {}, b""
        if headers.get("Content-Encoding") != "aes128gcm" or not headers.get("TTL"):
            return 400, {}, b"missing Content-Encoding: aes128gcm or TTL"
        try:
            claims = verify_vapid(headers.get("Authorization", ""), self.url)
            payload = json.loads(subscription.decrypt(body))
        except Exception as error:  # noqa: BLE001 -- a real push service answers 400/403; the test sees why
            return 403, {}, repr(error).encode()[:300]
        with self.lock:
            self.count += 1
            self.received.append(
                {
                    "path": path,
                    "payload": payload,
                    "vapid": claims,
                    "urgency": headers.get("Urgency"),
                    "topic": headers.get("Topic"),
                    "ttl": headers.get("TTL"),
                }
            )
        return 201, {"Location": f"{self.url}/message/{self.count}"}, b""


if __name__ == "__main__":
    service = WebPushService(int(sys.argv[1]), decrypt=False)
    service.server.serve_forever()
