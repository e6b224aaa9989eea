"""``POST /v1/notifications/bulk``: up to 1,000 single sends in one call, or one payload to a saved audience."""

from __future__ import annotations

from flask import g, jsonify

from app.accept import IdempotencyConflict, UnknownTemplate
from app.accept_bulk import ItemConflict, UnknownNames, accept_bulk
from app.api import send_schemas
from app.api.blueprint import bp
from app.api.routes import _error, accepted_json, dump, idempotency_key_of, parse_body
from app.topics.send import UnknownAudience, send_to_audience


@bp.post("/notifications/bulk")
def post_bulk():
    """All or nothing: every item is validated (schema, users, templates, keys) before any is stored."""
    payload = parse_body(send_schemas.BulkSend)
    if payload.audience is not None:
        return _to_audience(payload)
    idempotency_key_of(None)  # items carry their own keys; a malformed header is still refused
    try:
        results = accept_bulk(payload.items, g.api_key.id)
    except UnknownNames as error:
        body = {
            "error": {
                "code": error.code,
                "message": "items name users or templates that do not exist; nothing was stored",
                "fields": error.fields,
            }
        }
        return jsonify(body), 404
    except ItemConflict as error:
        return _error(
            409,
            "idempotency_conflict",
            f"items.{error.index}: idempotency_key {error.key!r} was used in the "
            "last 24 h with a different request body; nothing was stored",
        )
    return jsonify(
        dump(
            send_schemas.BulkAccepted, items=[{"id": r.id, "status": r.status, "replayed": r.replayed} for r in results]
        )
    ), 202


def _to_audience(payload):
    key = idempotency_key_of(payload.notification.idempotency_key)
    try:
        accepted = send_to_audience(payload, g.api_key.id, key)
    except UnknownAudience:
        return _error(404, "unknown_audience", f"no saved audience {payload.audience!r}")
    except UnknownTemplate:
        return _error(404, "unknown_template", f"no template with key {payload.notification.template!r}")
    except IdempotencyConflict:
        return _error(
            409, "idempotency_conflict", "this Idempotency-Key was used in the last 24 h with a different request body"
        )
    return accepted_json(accepted)
