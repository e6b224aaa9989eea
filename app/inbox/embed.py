"""JSON endpoints for the ``<herald-inbox>`` component, and the CORS rules that let a host page call them.

Thin views over :mod:`app.inbox.store`: the same entries page, grouping, times
and read/archive functions as the inbox page, answered as JSON. They accept a
user token only (``Authorization: Bearer``), never Herald's cookies, so they are
exempt from CSRF and no page elsewhere can act with a visitor's inbox session.

CORS is explicit: an ``Origin`` listed in ``HERALD_EMBED_ORIGINS`` gets
``Access-Control-Allow-Origin`` (itself, never ``*``) on these endpoints and
on ``/inbox/stream``; any other origin gets no CORS header, so its browser
refuses to show it the answer (and does not send a POST whose preflight failed).
``Access-Control-Allow-Credentials`` is never sent: cookies do not cross.
"""

from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request

from app.api.routes import BadRequest, _bad_request, parse_body
from app.inbox import store
from app.inbox.auth import require_token_recipient
from app.inbox.display import present
from app.inbox.embed_schemas import EntryIds
from app.inbox.grouping import group_entries
from app.models import Recipient
from app.models.types import utcnow

bp = Blueprint("inbox_api", __name__, url_prefix="/inbox/api")
bp.register_error_handler(BadRequest, _bad_request)  # the same 400 body as /v1: every bad field named

PAGE_SIZE = 20
CORS_PATHS = ("/inbox/api/", "/inbox/stream")
PREFLIGHT_MAX_AGE = 600


def bad_query(field: str, message: str) -> BadRequest:
    return BadRequest([{"field": field, "message": message}])


def entry_json(view) -> dict:
    entry = view.entry
    return {
        "ids": entry.ids,
        "unread_ids": entry.unread_ids,
        "headline": entry.headline,
        "body": entry.latest.body,
        "count": entry.count,
        "unread": entry.unread,
        "link": entry.link,
        "category": entry.latest.category,
        "created_at": view.iso,
        "when": view.relative,
        "when_absolute": view.absolute,
    }


def _page_json(recipient: Recipient, cursor: str | None, unread_only: bool, limit: int) -> dict:
    items, next_cursor = store.entries_page(recipient.id, limit, cursor, unread_only)
    views = present(group_entries(items), recipient.timezone, recipient.locale, utcnow())
    return {
        "entries": [entry_json(view) for view in views],
        "next_cursor": next_cursor,
        "unread_count": store.unread_count(recipient.id),
    }


@bp.get("/notifications")
def notifications():
    """The inbox as the page shows it (entries grouped by collapse key), newest first, by cursor."""
    recipient = require_token_recipient("inbox")
    cursor = request.args.get("cursor") or None
    if cursor is not None and not re.fullmatch(store.CURSOR_PATTERN, cursor):
        raise bad_query("cursor", "must be a next_cursor this endpoint returned")
    unread = request.args.get("unread_only", "false")
    if unread not in ("true", "false"):
        raise bad_query("unread_only", "must be true or false")
    limit = request.args.get("limit", str(PAGE_SIZE))
    if not re.fullmatch(r"[0-9]{1,3}", limit) or not 1 <= int(limit) <= store.MAX_LIMIT:
        raise bad_query("limit", f"must be an integer from 1 to {store.MAX_LIMIT}")
    try:
        return jsonify(_page_json(recipient, cursor, unread == "true", int(limit)))
    except store.BadCursor as error:
        raise bad_query("cursor", str(error)) from None


@bp.post("/read")
def read():
    recipient = require_token_recipient("inbox")
    ids = parse_body(EntryIds).ids
    marked = store.mark_ids_read(recipient.id, ids)
    return jsonify({"marked_read": marked, "unread_count": store.unread_count(recipient.id)})


@bp.post("/read-all")
def read_all():
    recipient = require_token_recipient("inbox")
    marked = store.mark_all_read(recipient.id)
    return jsonify({"marked_read": marked, "unread_count": 0})


@bp.post("/archive")
def archive():
    recipient = require_token_recipient("inbox")
    ids = parse_body(EntryIds).ids
    archived = store.archive(recipient.id, ids)
    return jsonify({"archived": archived, "unread_count": store.unread_count(recipient.id)})


def allowed_origin(origin: str | None, allowed: tuple[str, ...]) -> str | None:
    """The origin to name in Access-Control-Allow-Origin, or None: exact match, case-insensitive, never a wildcard."""
    if not origin or origin.lower() not in allowed:
        return None
    return origin


@bp.after_app_request
def cors_headers(response):
    if not request.path.startswith(CORS_PATHS):
        return response
    response.vary.add("Origin")
    origin = allowed_origin(request.headers.get("Origin"), current_app.config["EMBED_ORIGINS"])
    if origin is None:
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Last-Event-ID"
        response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return response
