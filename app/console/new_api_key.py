"""Showing a new API key exactly once, as POST → redirect → GET.

The plaintext exists nowhere but in this hand-over: the POST keeps it in Redis
for a few minutes under a random slot named in the admin's session (never in
the cookie itself), and the page it redirects to takes it out (GETDEL). A
reload, the back button or a second tab then shows nothing and creates
nothing. When Redis cannot hold it, the POST's own answer shows the key, as
the only alternative to losing it.
"""

from __future__ import annotations

import json
import logging
import secrets

from flask import flash, redirect, render_template, session, url_for
from redis.exceptions import RedisError

from app.auth import admin_required
from app.console.blueprint import bp
from app.extensions import db
from app.models import ApiKey
from app.redis_client import get_redis, key

log = logging.getLogger(__name__)

SESSION_SLOT = "new_api_key_slot"
HOLD_SECONDS = 300
NO_STORE = {"Cache-Control": "no-store"}


def _slot_key(slot: str) -> str:
    return key("console", "new-api-key", slot)


def _render(api_key: ApiKey, plaintext: str, status: int):
    return (
        render_template("console/operations/api_key_created.html", api_key=api_key, plaintext=plaintext),
        status,
        NO_STORE,
    )


def show_new_key(api_key: ApiKey, plaintext: str):
    """The answer to the POST that created ``api_key``: a 303 to the page that shows it once."""
    slot = secrets.token_urlsafe(16)
    try:
        get_redis().set(_slot_key(slot), json.dumps({"id": api_key.id, "plaintext": plaintext}), ex=HOLD_SECONDS)
    except RedisError as error:
        log.warning("could not hold the new API key for the next page (%s); showing it in the POST's answer", error)
        return _render(api_key, plaintext, 201)
    session[SESSION_SLOT] = slot
    return redirect(url_for("console.api_key_created"), code=303)


def _take(slot: str | None) -> dict | None:
    if not slot:
        return None
    try:
        held = get_redis().getdel(_slot_key(slot))
    except RedisError:
        return None
    return json.loads(held) if held else None


@bp.get("/operations/api-keys/created")
@admin_required
def api_key_created():
    held = _take(session.pop(SESSION_SLOT, None))
    api_key = db.session.get(ApiKey, held["id"]) if held else None
    if api_key is None:
        flash(
            "A new key is shown only once, and this one was already shown. If it was not copied, revoke it and "
            "create another.",
            "info",
        )
        return redirect(url_for("console.api_key_list"))
    return _render(api_key, held["plaintext"], 200)
