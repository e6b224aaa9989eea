"""/v1 routes that feed daily rules: attributes of one user, and users in bulk (a warehouse export)."""

from __future__ import annotations

from flask import jsonify

from app.api.blueprint import bp
from app.api.routes import USER_ID, BadRequest, dump, parse_body, user_json
from app.rules import schemas
from app.rules.attributes import duplicate_user_ids, patch_attributes, upsert_users


@bp.patch(f"/users/{USER_ID}/attributes")
def patch_user_attributes(user_id: str):
    recipient = patch_attributes(user_id, parse_body(schemas.AttributesPatch).attributes)
    if recipient is None:
        return jsonify({"error": {"code": "not_found", "message": f"user {user_id!r} does not exist"}}), 404
    return jsonify(user_json(recipient))


@bp.post("/users:batch")
def batch_users():
    """All or nothing: any invalid user is a 400 naming its index, and nothing is written."""
    payload = parse_body(schemas.UsersBatch)
    problems = duplicate_user_ids(payload.users)
    if problems:
        raise BadRequest(problems)
    created, updated = upsert_users(payload.users)
    return jsonify(dump(schemas.BatchResult, received=len(payload.users), created=created, updated=updated))
