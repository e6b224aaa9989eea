"""API keys: random, shown once, stored as SHA-256 (a fast hash is right for 256-bit random keys)."""
from __future__ import annotations

import hashlib
import secrets

from app.extensions import db
from app.models import ApiKey
from app.models.types import utcnow

KEY_PREFIX = "hk_"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_api_key(name: str, rate_limit: str = "6000/minute") -> tuple[ApiKey, str]:
    """Create and commit a key; return the row and the plaintext, which is never stored."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey(name=name, prefix=plaintext[:10], key_hash=hash_key(plaintext), rate_limit=rate_limit)
    db.session.add(api_key)
    db.session.commit()
    return api_key, plaintext


def find_active_key(plaintext: str) -> ApiKey | None:
    if not plaintext.startswith(KEY_PREFIX):
        return None
    api_key = db.session.scalar(db.select(ApiKey).filter_by(key_hash=hash_key(plaintext)))
    if api_key is None or api_key.revoked_at is not None:
        return None
    return api_key


def revoke(api_key: ApiKey) -> None:
    api_key.revoked_at = utcnow()
    db.session.commit()
