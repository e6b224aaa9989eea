"""Short-lived user tokens a host product signs itself: JWT, HS256, ``sub`` + ``exp`` (+ ``iat``, ``nbf``, ``scope``).

Pure functions over PyJWT, no Flask: the caller passes the secret, the scope
the endpoint needs and the clock. Every refusal is a :class:`TokenRefused`
naming one reason from :data:`REASONS`, which the views send back as JSON.

The key is ``HERALD_USER_TOKEN_SECRET``, never the inbox-link secret: the link's
token is hex HMAC-SHA256(secret, user id) and a JWT's signature is base64url
HMAC-SHA256(secret, "header.payload"), so with one shared key a host that signs
links for user ids a person can choose would also be minting JWTs for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
# What a token may be good for; a token without ``scope`` is good for all of them.
SCOPES = {
    "inbox": "the inbox page and the component's JSON endpoints (list, mark read, archive)",
    "stream": "the live event stream, GET /inbox/stream",
    "preferences": "the preferences page",
}
LEEWAY_SECONDS = 10  # clock skew tolerated between the host and Herald, on exp, nbf and iat
MAX_SUBJECT_LENGTH = 255  # a recipient's external id
MAX_TOKEN_LENGTH = 4096
JWS_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
REASONS = {
    "missing": "No user token was sent: use Authorization: Bearer <token> (or access_token=<token> where documented).",
    "malformed": "The user token is not a JWT Herald can read.",
    "wrong_algorithm": "The user token must be signed with HS256.",
    "bad_signature": "The user token is not signed with this Herald's HERALD_USER_TOKEN_SECRET.",
    "expired": "The user token has expired; ask the host product for a new one.",
    "not_yet_valid": "The user token is not valid yet (nbf or iat is in the future).",
    "missing_claim": "The user token lacks a required claim (sub and exp are required).",
    "bad_claim": "A claim of the user token has the wrong type or value.",
    "too_long_lived": "The user token's exp is further away than HERALD_USER_TOKEN_MAX_SECONDS allows.",
    "wrong_scope": "The user token's scope does not include what this endpoint needs.",
}


class TokenRefused(Exception):
    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(detail or REASONS[reason])
        self.reason = reason


@dataclass(frozen=True)
class UserToken:
    user_id: str
    scopes: frozenset[str]
    expires_at: int


def granted_scopes(claim) -> frozenset[str]:
    """``scope`` is a space-separated string (as in OAuth 2.0); absent means every scope."""
    if claim is None:
        return frozenset(SCOPES)
    if not isinstance(claim, str):
        raise TokenRefused("bad_claim", "scope must be a string of space-separated scopes.")
    scopes = frozenset(claim.split())
    unknown = scopes - set(SCOPES)
    if unknown or not scopes:
        raise TokenRefused("bad_claim", f"scope may hold only {', '.join(SCOPES)}; got {claim[:100]!r}.")
    return scopes


def _decode(token: str, secret: str) -> dict:
    if len(token) > MAX_TOKEN_LENGTH or not JWS_COMPACT.fullmatch(token):
        raise TokenRefused("malformed")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise TokenRefused("malformed") from None
    if header.get("alg") != ALGORITHM:
        raise TokenRefused("wrong_algorithm")
    try:
        # PyJWT reads its own clock; exp, nbf and iat are checked below against the caller's ``now`` instead,
        # so one clock decides expiry and the lifetime cap, and tests need no sleeping.
        return jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"], "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError:
        raise TokenRefused("bad_signature") from None
    except jwt.MissingRequiredClaimError as error:
        raise TokenRefused(
            "missing_claim", f"The user token lacks the {error.claim!r} claim (sub and exp are required)."
        ) from None
    except jwt.DecodeError:
        raise TokenRefused("malformed") from None
    except jwt.InvalidTokenError as error:
        raise TokenRefused("bad_claim", f"The user token has a bad claim: {error}.") from None


def _number(claims: dict, name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TokenRefused("bad_claim", f"{name} must be a NumericDate (seconds since the epoch).")
    return value


def verify_user_token(token: str | None, secret: str, needed_scope: str, now: float, max_lifetime: int) -> UserToken:
    """The user a token vouches for, or :class:`TokenRefused` naming why not."""
    if not token:
        raise TokenRefused("missing")
    claims = _decode(token, secret)
    expires, not_before, issued = _number(claims, "exp"), _number(claims, "nbf"), _number(claims, "iat")
    if expires is None:
        raise TokenRefused("missing_claim", "The user token lacks the 'exp' claim (sub and exp are required).")
    if expires <= now - LEEWAY_SECONDS:
        raise TokenRefused("expired")
    if any(moment is not None and moment > now + LEEWAY_SECONDS for moment in (not_before, issued)):
        raise TokenRefused("not_yet_valid")
    if expires > now + max_lifetime + LEEWAY_SECONDS:
        raise TokenRefused(
            "too_long_lived", f"exp may be at most {max_lifetime} seconds from now (HERALD_USER_TOKEN_MAX_SECONDS)."
        )
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH or "\x00" in subject:
        raise TokenRefused("bad_claim", f"sub must be the user id, a string of 1 to {MAX_SUBJECT_LENGTH} characters.")
    scopes = granted_scopes(claims.get("scope"))
    if needed_scope not in scopes:
        raise TokenRefused(
            "wrong_scope", f"This needs the {needed_scope!r} scope; the token has {' '.join(sorted(scopes))!r}."
        )
    return UserToken(subject, scopes, int(expires))


def sign_user_token(
    secret: str, user_id: str, expires_at: int, scope: str | None = None, issued_at: int | None = None
) -> str:
    """What a host product does (and ``flask user-token``): an HS256 JWT for ``user_id``."""
    claims: dict = {"sub": user_id, "exp": expires_at}
    if issued_at is not None:
        claims["iat"] = issued_at
    if scope:
        claims["scope"] = scope
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
