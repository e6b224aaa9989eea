"""End-user sign-in for the inbox: the host product vouches for a user id, with an HMAC link or a user token.

The host product links to ``/inbox?user=<id>&token=<hmac>`` where the token is
the lowercase hex HMAC-SHA256 of the user id keyed with ``INBOX_SECRET``.
Herald then keeps the recipient in its own session keys, apart from the
staff's flask-login keys, and never accepts a bare user id from a request.

Or the host signs a short-lived JWT (:mod:`app.inbox.tokens`) and sends it as
``Authorization: Bearer``; pages and the stream also take it as
``?access_token=`` because a link and an EventSource cannot carry a header.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from functools import wraps
from urllib.parse import quote

from flask import abort, current_app, jsonify, make_response, render_template, request, session
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.inbox.tokens import TokenRefused, UserToken, verify_user_token
from app.models import Recipient

SESSION_RECIPIENT = "inbox_recipient_id"
# Kept beside the numeric id so a session outliving an erased recipient never
# lands on a later recipient that reuses the number (SQLite may reuse it).
SESSION_EXTERNAL = "inbox_external_id"
SESSION_SCOPES = "inbox_scopes"
SESSION_EXPIRES = "inbox_expires_at"


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


def recipient_for(user_id: str) -> Recipient:
    """The recipient a verified user id names; created on first visit, as when the host product links to it.

    A component's first calls can arrive together: the unique external id decides, and the loser reads the winner's row.
    """
    recipient = db.session.scalar(select(Recipient).where(Recipient.external_id == user_id))
    if recipient is None:
        recipient = Recipient(external_id=user_id, locale="en", attributes={})
        db.session.add(recipient)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            recipient = db.session.scalars(select(Recipient).where(Recipient.external_id == user_id)).one()
    return recipient


def _open_session(recipient: Recipient, scopes=None, expires_at: int | None = None) -> None:
    """A session from the HMAC link holds every scope and does not expire; one from a user token keeps its limits."""
    session[SESSION_RECIPIENT] = recipient.id
    session[SESSION_EXTERNAL] = recipient.external_id
    session[SESSION_SCOPES] = sorted(scopes) if scopes is not None else None
    session[SESSION_EXPIRES] = expires_at


def sign_in(user_id: str, token: str) -> Recipient | None:
    """Open an inbox session for a verified user id; the recipient is created on first visit."""
    if not token_is_valid(current_app.config["INBOX_SECRET"], user_id, token):
        return None
    recipient = recipient_for(user_id)
    _open_session(recipient)
    return recipient


def check_user_token(token: str | None, scope: str) -> UserToken:
    """Verify a host-signed JWT with this Herald's settings; raises :class:`TokenRefused`."""
    config = current_app.config
    return verify_user_token(token, config["USER_TOKEN_SECRET"], scope, time.time(), config["USER_TOKEN_MAX_SECONDS"])


def sign_in_with_user_token(token: str, scope: str) -> Recipient:
    """A page opened with ``?access_token=<jwt>``: a session limited to the token's scopes and lifetime."""
    verified = check_user_token(token, scope)
    recipient = recipient_for(verified.user_id)
    _open_session(recipient, verified.scopes, verified.expires_at)
    return recipient


def bearer_token() -> str | None:
    """The token of ``Authorization: Bearer <token>`` ("" when empty); None without one. Other schemes (a proxy's
    Basic auth in front of Herald) are not Herald's business and leave the inbox session in charge."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class Access:
    recipient: Recipient
    expires_at: int | None  # when the credential stops being good (a user token's exp), None for the HMAC session


def token_access(scope: str, allow_query: bool = False) -> Access | None:
    """The recipient a user token in this request vouches for; None when the request carries no token.

    The header wins; ``access_token`` in the query string is read only where a browser cannot send a header
    (EventSource, a link opened in a new tab). Raises :class:`TokenRefused` for a token that is not good.
    """
    token = bearer_token()
    if token is None and allow_query:
        token = request.args.get("access_token")
    if token is None:
        return None
    verified = check_user_token(token, scope)
    return Access(recipient_for(verified.user_id), verified.expires_at)


def session_access(scope: str = "inbox") -> Access | None:
    """The recipient of this browser's inbox session, if the session is still good for ``scope``."""
    recipient_id = session.get(SESSION_RECIPIENT)
    recipient = db.session.get(Recipient, recipient_id) if isinstance(recipient_id, int) else None
    if recipient is None or recipient.external_id != session.get(SESSION_EXTERNAL):
        return None
    scopes, expires_at = session.get(SESSION_SCOPES), session.get(SESSION_EXPIRES)
    if scopes is not None and scope not in scopes:
        return None
    if expires_at is not None and expires_at <= time.time():
        return None
    return Access(recipient, expires_at)


def signed_in_recipient(scope: str = "inbox") -> Recipient | None:
    """The recipient of this browser's inbox session, or None."""
    access = session_access(scope)
    return access.recipient if access else None


def token_refusal(error: TokenRefused):
    """401 with a JSON body naming the reason (RFC 6750's WWW-Authenticate too); HTML for a person's browser tab."""
    message = str(error)
    wants_html = request.accept_mimetypes.accept_html and request.accept_mimetypes.best == "text/html"
    if wants_html and not request.path.startswith("/inbox/api/"):
        response = make_response(
            render_template("errors/error.html", code=401, name="Sign in again", description=message), 401
        )
    else:
        body = {"error": {"code": "invalid_token", "reason": error.reason, "message": message}}
        response = make_response(jsonify(body), 401)
    response.headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{error.reason}"'
    return response


def require_recipient(scope: str = "inbox") -> Recipient:
    """The request's recipient (a user token, else the session), or 401: end users arrive through the host product."""
    try:
        access = token_access(scope) or session_access(scope)
    except TokenRefused as error:
        abort(token_refusal(error))
    if access is None:
        abort(401, "Open your notifications from the product you use: this page has no signed-in user.")
    return access.recipient


def require_token_recipient(scope: str) -> Recipient:
    """The recipient of the request's ``Authorization: Bearer`` user token, or 401; cookies do not count here."""
    try:
        access = token_access(scope)
        if access is None:
            raise TokenRefused("missing")
    except TokenRefused as error:
        abort(token_refusal(error))
    return access.recipient


def recipient_required(view=None, *, scope: str = "inbox"):
    """Pass the request's recipient to the view as its first argument (``@recipient_required(scope="preferences")``)."""
    if view is None:
        return lambda later: recipient_required(later, scope=scope)

    @wraps(view)
    def wrapper(*args, **kwargs):
        return view(require_recipient(scope), *args, **kwargs)

    return wrapper
