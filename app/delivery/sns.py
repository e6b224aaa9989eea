"""Amazon SNS message signatures, checked as AWS documents them. Pure: the certificate is fetched by the caller.

https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html -- the string to sign
is ``name\\nvalue\\n`` for a fixed list of fields in byte order (Subject only when present);
SignatureVersion 1 signs it with SHA1withRSA, 2 with SHA256withRSA; the certificate must come over
https from an ``sns.<region>.amazonaws.com`` host. Any AWS account's topic is signed with the same
certificate, so the webhook also checks the TopicArn against its own list.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SUBSCRIPTION_TYPES = {"SubscriptionConfirmation", "UnsubscribeConfirmation"}
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")


def string_to_sign(message: dict) -> str | None:
    """What SNS signed for this message, or None when a field it signs is missing."""
    fields = SUBSCRIPTION_FIELDS if message.get("Type") in SUBSCRIPTION_TYPES else NOTIFICATION_FIELDS
    parts = []
    for name in fields:
        value = message.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            return None
        parts.append(f"{name}\n{value}\n")
    return "".join(parts)


def aws_url(url: str, test_prefix: str | None = None) -> bool:
    """An https URL on an SNS host (the signing certificate, a SubscribeURL); or, in tests only, under ``test_prefix``."""
    if test_prefix and isinstance(url, str) and url.startswith(test_prefix):
        return True
    try:
        parts = urlsplit(url)
        port = parts.port
    except (TypeError, ValueError):
        return False
    return (
        parts.scheme == "https"
        and port in (None, 443)
        and not parts.username
        and SNS_HOST.fullmatch(parts.hostname or "") is not None
    )


def signature_valid(message: dict, certificate_pem: bytes) -> bool:
    """Whether the message's Signature verifies with the certificate's RSA key, per its SignatureVersion."""
    algorithm = HASHES.get(str(message.get("SignatureVersion")))
    text = string_to_sign(message)
    if algorithm is None or text is None or not isinstance(message.get("Signature"), str):
        return False
    try:
        key = x509.load_pem_x509_certificate(certificate_pem).public_key()
        signature = base64.b64decode(message["Signature"], validate=True)
    except ValueError:
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, text.encode(), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        return False
    return True
