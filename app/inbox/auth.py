"""End-user sign-in for the inbox: the host product vouches for a user id with an HMAC.

The host product links to ``/inbox?user=<id>&token=<hmac>`` where the token is
the lowercase hex HMAC-SHA256 of the user id keyed with ``INBOX_SECRET``.
Herald then keeps the recipient in its own session keys, apart from the
staff's flask-login keys, and never accepts a bare user id from a request.
"""
from __future__ import annotations

import hashlib
import hmac
from functools import wraps
from urllib.parse import quote

from flask import abort, current_app, session
from sqlalchemy import select

from app.extensions import db
from app.models import Recipient

SESSION_RECIPIENT = "inbox_recipient_id"
# Kept beside the numeric id so a session outliving an erased recipient never
# lands on a later recipient that reuses the number (SQLite may reuse it).
SESSION_EXTERNAL = "inbox_external_id"


def user_token(secret: str, user_id: str) -> str:
    """What the host product computes: lowercase hex HMAC-SHA256(secret, user id)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def inbox_path(secret: str, user_id: str) -> str:
    """The signed link a host product gives its user, from the site's root: ``/inbox?user=<id>&token=<hmac>``."""
    return f"/inbox?user={quote(user_id, safe='')}&token={user_token(secret, user_id)}"


def inbox_url(base_url: str, secret: str, user_id: str) -> str:
    return base_url.rstrip("/") + inbox_path(secret, user_id)


def token_is_valid(secret: str, user_id: str, token: str) -> bool:
    """Constant-time check of ``token`` against the user id; any malformed input is simply invalid."""
    if not user_id or not token:
        return False
    return hmac.compare_digest(user_token(secret, user_id).encode(), token.encode("utf-8", "surrogatepass"))


def sign_in(user_id: str, token: str) -> Recipient | None:
    """Open an inbox session for a verified user id; the recipient is created on first visit."""
    if not token_is_valid(current_app.config["INBOX_SECRET"], user_id, token):
        return None
    recipient = db.session.scalar(select(Recipient).where(Recipient.external_id == user_id))
    if recipient is None:
        recipient = Recipient(external_id=user_id, locale="en", attributes={})
        db.session.add(recipient)
        db.session.commit()
    session[SESSION_RECIPIENT] = recipient.id
    session[SESSION_EXTERNAL] = recipient.external_id
    return recipient


def signed_in_recipient() -> Recipient | None:
    """The recipient of this browser's inbox session, or None."""
    recipient_id = session.get(SESSION_RECIPIENT)
    recipient = db.session.get(Recipient, recipient_id) if isinstance(recipient_id, int) else None
    if recipient is not None and recipient.external_id != session.get(SESSION_EXTERNAL):
        return None
    return recipient


def require_recipient() -> Recipient:
    """The session's recipient, or 401: end users arrive through the host product's signed link."""
    recipient = signed_in_recipient()
    if recipient is None:
        abort(401, "Open your notifications from the product you use: this page has no signed-in user.")
    return recipient


def recipient_required(view):
    """Pass the session's recipient to the view as its first argument."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        return view(require_recipient(), *args, **kwargs)

    return wrapper
