"""Signed tokens (unsubscribe and click links) at batch speed: itsdangerous's format, its key derived once.

itsdangerous builds a signer per ``dumps`` and derives its key (a SHA-1 of salt and secret) on every
signature; a campaign signs one or more tokens per recipient, so that was most of a token's cost. Here one
serializer per (secret, salt) keeps one signer whose keyed HMAC is copied per token. The tokens are
byte-for-byte those of ``URLSafeSerializer(secret, salt=salt)``, and it reads them (and any it signed) back.
"""

from __future__ import annotations

import hmac
import json
from functools import lru_cache

from itsdangerous import Signer, URLSafeSerializer
from itsdangerous.encoding import base64_encode, want_bytes


class _KeyedSigner(Signer):
    """A :class:`Signer` whose key is derived once, signing with a copy of a keyed HMAC."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._mac = hmac.new(self.derive_key(), digestmod=self.digest_method)

    def get_signature(self, value: str | bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(want_bytes(value))
        return base64_encode(mac.digest())


class _CompactJSON:
    """itsdangerous's compact JSON (no spaces, non-ASCII as is) with one encoder, not one per call."""

    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    loads = staticmethod(json.loads)

    @classmethod
    def dumps(cls, obj) -> str:
        return cls.encode(obj)


class _Serializer(URLSafeSerializer):
    """One signer for the serializer's own salt, not one per call."""

    def __init__(self, secret: str, salt: str):
        super().__init__(secret, salt=salt, serializer=_CompactJSON, signer=_KeyedSigner)
        self._signer = super().make_signer(self.salt)

    def make_signer(self, salt=None):
        return self._signer if salt is None or want_bytes(salt) == self.salt else super().make_signer(salt)


@lru_cache(maxsize=32)
def serializer(secret: str, salt: str) -> URLSafeSerializer:
    """The shared serializer of ``secret`` and ``salt`` (thread-safe: it holds no state between calls)."""
    return _Serializer(secret, salt)
