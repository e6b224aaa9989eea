"""Web push payload encryption (RFC 8291 aes128gcm), decrypted by the test peer's own implementation of the RFC."""

from __future__ import annotations

import struct

import pytest
from cryptography.exceptions import InvalidTag

from app.channels.web_push import MAX_PAYLOAD_BYTES, encrypt_payload
from tests.peers.webpush import Subscription, b64url


def keys_of(subscription: Subscription) -> tuple[str, str]:
    sent = subscription.to_json()["keys"]
    return sent["p256dh"], sent["auth"]


@pytest.mark.parametrize("size", [1, 200, MAX_PAYLOAD_BYTES])  # a payload is JSON: never empty
def test_the_subscriber_decrypts_what_was_encrypted_for_it(size):
    subscription = Subscription("https://push.example/one")
    body = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    encrypted = encrypt_payload(body, *keys_of(subscription))
    assert subscription.decrypt(encrypted) == body
    # One record: salt(16) + record size(4) + key id length(1) + sender key(65) + body + delimiter + tag(16).
    assert struct.unpack("!L", encrypted[16:20])[0] == 4096 and encrypted[20] == 65
    assert len(encrypted) == 86 + size + 1 + 16 <= 4096


def test_each_message_has_its_own_salt_and_sender_key():
    subscription = Subscription("https://push.example/one")
    first, second = (encrypt_payload(b"same", *keys_of(subscription)) for _ in range(2))
    assert first[:16] != second[:16] and first[21:86] != second[21:86]


def test_another_subscriber_cannot_decrypt():
    mine, theirs = Subscription("https://push.example/mine"), Subscription("https://push.example/theirs")
    encrypted = encrypt_payload(b"for my eyes", *keys_of(mine))
    with pytest.raises(InvalidTag):
        theirs.decrypt(encrypted)


@pytest.mark.parametrize("p256dh", ["not base64!", b64url(b"\x04" + b"\x01" * 64), ""])
def test_keys_that_are_not_a_p256_point_are_a_value_error(p256dh):
    with pytest.raises(ValueError):
        encrypt_payload(b"hello", p256dh, b64url(b"\x00" * 16))
