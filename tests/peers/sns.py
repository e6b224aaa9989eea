"""An SNS stand-in on loopback: serves a self-signed signing certificate, signs messages like SNS, takes confirmations."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from app.delivery.sns import string_to_sign
from tests.peers.http import HttpPeer

CERT_PATH = "/SimpleNotificationService-0000000000000000000000.pem"


def self_signed() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(serialization.Encoding.PEM)


class SnsPeer(HttpPeer):
    def __init__(self, topic_arn: str, port: int = 0):
        super().__init__(port)
        self.topic_arn = topic_arn
        self.key, self.certificate = self_signed()
        self.confirmed: list[str] = []  # tokens whose SubscribeURL was fetched
        self.cert_fetches = 0

    @property
    def cert_url(self) -> str:
        return self.url + CERT_PATH

    def handle(self, method, path, headers, body):
        if method == "GET" and path == CERT_PATH:
            with self.lock:
                self.cert_fetches += 1
            return 200, {"Content-Type": "application/x-pem-file"}, self.certificate
        if method == "GET" and path.startswith("/?Action=ConfirmSubscription"):
            self.confirmed.append(path.rpartition("Token=")[2])
            return 200, {"Content-Type": "text/xml"}, b"<ConfirmSubscriptionResponse/>"
        return 404, {}, {"message": "not found"}

    def sign(self, message: dict, version: str = "2", key=None) -> dict:
        message = {
            **message,
            "SignatureVersion": version,
            "SigningCertURL": message.get("SigningCertURL", self.cert_url),
        }
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = (key or self.key).sign(string_to_sign(message).encode(), padding.PKCS1v15(), algorithm)
        return {**message, "Signature": base64.b64encode(signature).decode()}

    def notification(self, ses_notification: dict, version: str = "2", **overrides) -> dict:
        message = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": self.topic_arn,
            "Message": json.dumps(ses_notification),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "UnsubscribeURL": self.url + "/?Action=Unsubscribe",
            **overrides,
        }
        return self.sign(message, version)

    def subscription(self, subscribe_url: str | None = None) -> dict:
        token = uuid.uuid4().hex
        message = {
            "Type": "SubscriptionConfirmation",
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": self.topic_arn,
            "Message": f"You have chosen to subscribe to the topic {self.topic_arn}.",
            "SubscribeURL": subscribe_url
            or f"{self.url}/?Action=ConfirmSubscription&TopicArn={self.topic_arn}&Token={token}",
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
        return self.sign(message)
