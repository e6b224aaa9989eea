"""API keys: random, shown once, stored as SHA-256 (a fast hash is right for 256-bit random keys)."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from flask import current_app

from app.api.scopes import DEFAULT_SCOPES, parse_scopes
from app.extensions import db
from app.models import ApiKey
from app.models.types import utcnow

KEY_PREFIX = "hk_"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_api_key(
    name: str, rate_limit: str | None = None, scopes: tuple[str, ...] | list[str] = DEFAULT_SCOPES
) -> tuple[ApiKey, str]:
    """Create and commit a key; return the row and the plaintext, which is never stored.

    Without a ``rate_limit`` the key gets the installation's default (``HERALD_API_RATE_LIMIT``).
    Raises ``UnknownScope`` for a scope name Herald does not have (or none at all).
    """
    rate_limit = rate_limit or current_app.config["API_RATE_LIMIT"]
    granted = parse_scopes(list(scopes))
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey(
        name=name, prefix=plaintext[:10], key_hash=hash_key(plaintext), rate_limit=rate_limit, scopes=" ".join(granted)
    )
    db.session.add(api_key)
    db.session.commit()
    return api_key, plaintext


@dataclass(frozen=True)
class CallerKey:
    """What a request needs to know about its key; cheap to cache, safe to share between requests."""

    id: int
    name: str
    rate_limit: str
    scopes: frozenset[str]


# key hash -> (caller, monotonic expiry). A revoked key stops working within CACHE_SECONDS in every process (at
# once in the process that revoked it); a changed rate limit or scope applies within the same time. One
# lookup per key per process every few seconds is nothing next to the two statements of each accept.
_cache: dict[str, tuple[CallerKey, float]] = {}
CACHE_SECONDS = 5.0


def find_active_key(plaintext: str) -> CallerKey | None:
    if not plaintext.startswith(KEY_PREFIX):
        return None
    digest = hash_key(plaintext)
    cached = _cache.get(digest)
    if cached and cached[1] > time.monotonic():
        return cached[0]
    api_key = db.session.scalar(db.select(ApiKey).filter_by(key_hash=digest))
    if api_key is None or api_key.revoked_at is not None:
        _cache.pop(digest, None)
        return None
    caller = CallerKey(api_key.id, api_key.name, api_key.rate_limit, frozenset(api_key.scopes.split()))
    _cache[digest] = (caller, time.monotonic() + CACHE_SECONDS)
    return caller


def revoke(api_key: ApiKey) -> None:
    api_key.revoked_at = utcnow()
    db.session.commit()
    _cache.pop(api_key.key_hash, None)
