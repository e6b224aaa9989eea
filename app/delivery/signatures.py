"""Webhook signature checks, as pure functions over the request's parts."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def twilio_signature(url: str, params: list[tuple[str, str]], auth_token: str) -> str:
    """``X-Twilio-Signature``: base64 HMAC-SHA1 of the full URL followed by every POST name+value, sorted by name."""
    data = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def twilio_signature_valid(url: str, params: list[tuple[str, str]], auth_token: str, signature: str) -> bool:
    return hmac.compare_digest(twilio_signature(url, params, auth_token).encode(), signature.encode())


def sendgrid_signature_valid(public_key_b64: str, timestamp: str, payload: bytes, signature_b64: str) -> bool:
    """SendGrid Event Webhook: ECDSA P-256 / SHA-256 over ``timestamp + raw body``, signature base64 DER.

    The key is what SendGrid's settings page shows: base64 of the DER public key.
    """
    try:
        key = serialization.load_der_public_key(base64.b64decode(public_key_b64))
        signature = base64.b64decode(signature_b64, validate=True)
    except ValueError:
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
