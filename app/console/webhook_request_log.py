"""``/console/webhooks/request-log``: a receiver inside Herald, so a newcomer can watch webhooks arrive.

The demo (``make run``) registers an endpoint pointing here. A POST is kept only when it carries a valid
Standard Webhooks signature of an endpoint registered with this very URL, so nobody else can write into it;
admins read the last :data:`KEEP` requests on the page.
"""

from __future__ import annotations

import json
import time

from flask import abort, render_template, request
from redis.exceptions import RedisError
from sqlalchemy import select

from app.auth import admin_required
from app.console.blueprint import bp
from app.extensions import csrf, db
from app.models import WebhookEndpoint
from app.outbound_webhooks.endpoints import REQUEST_LOG_PATH
from app.outbound_webhooks.signing import verify
from app.redis_client import get_redis, key

PATH = REQUEST_LOG_PATH
ROUTE = REQUEST_LOG_PATH.removeprefix(bp.url_prefix or "")  # the console blueprint adds /console
KEEP = 50
MAX_BODY = 64 * 1024
SHOWN_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent")


def _log_key() -> str:
    return key("console", "webhook-request-log")


def signed_by(body: bytes) -> WebhookEndpoint | None:
    """The endpoint registered with this page's URL whose secret (or previous secret) signed the request."""
    now = int(time.time())
    for endpoint in db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.url.endswith(PATH))):
        for secret in filter(None, (endpoint.secret, endpoint.previous_secret)):
            if verify(secret, dict(request.headers), body, now):
                return endpoint
    return None


@bp.post(ROUTE)
@csrf.exempt
def webhook_request_log_receive():
    if (request.content_length or 0) > MAX_BODY:
        abort(413, "The body is too large for the request log.")
    body = request.get_data()
    endpoint = signed_by(body)
    if endpoint is None:
        abort(401, "Only requests signed by an endpoint registered with this URL are kept.")
    entry = {
        "received_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "endpoint_id": endpoint.id,
        "headers": {name: request.headers.get(name, "") for name in SHOWN_HEADERS},
        "body": body.decode(errors="replace"),
    }
    try:
        pipe = get_redis().pipeline()
        pipe.lpush(_log_key(), json.dumps(entry))
        pipe.ltrim(_log_key(), 0, KEEP - 1)
        pipe.execute()
    except RedisError:
        abort(503, "The request log cannot be kept right now.")
    return "", 204


def _pretty(body: str) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


@bp.get(ROUTE)
@admin_required
def webhook_request_log():
    try:
        raw = get_redis().lrange(_log_key(), 0, KEEP - 1)
    except RedisError:
        raw = None
    entries = [json.loads(item) for item in raw] if raw is not None else None
    for entry in entries or []:
        entry["pretty"] = _pretty(entry["body"])
    return render_template("console/webhooks/request_log.html", entries=entries, keep=KEEP)
