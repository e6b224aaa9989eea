"""/v1/webhook-endpoints: register, list, change, delete endpoints and rotate their secret (scope webhooks:manage)."""

from __future__ import annotations

from flask import abort, jsonify

from app.api.blueprint import bp
from app.api.routes import BadRequest, dump, parse_body
from app.extensions import db
from app.models import WebhookEndpoint
from app.outbound_webhooks import schemas
from app.outbound_webhooks.endpoints import EndpointProblem, change_endpoint, create_endpoint, endpoints, rotate_secret

# No ``max`` in the converter: a converter that refuses a value makes werkzeug answer 405 for the sibling methods of
# the same path; an id over the maximum is a 404 below instead.
ENDPOINT_ID = "<int:endpoint_id>"
MAX_ID = 2**63 - 1


def endpoint_json(endpoint: WebhookEndpoint, model=schemas.WebhookEndpointOut, **extra) -> dict:
    return dump(
        model,
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=endpoint.event_types,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        failing_since=endpoint.failing_since,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
        **extra,
    )


def endpoint_or_404(endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) if endpoint_id <= MAX_ID else None
    if endpoint is None:
        abort(404, f"webhook endpoint {endpoint_id} does not exist")
    return endpoint


def _refused(problem: EndpointProblem):
    db.session.rollback()
    raise BadRequest([{"field": problem.field, "message": str(problem)}])


@bp.get("/webhook-endpoints")
def list_webhook_endpoints():
    return jsonify(dump(schemas.WebhookEndpointList, items=[endpoint_json(e) for e in endpoints()]))


@bp.post("/webhook-endpoints")
def create_webhook_endpoint():
    fields = parse_body(schemas.WebhookEndpointCreate)
    try:
        endpoint, secret = create_endpoint(fields.url, fields.event_types, fields.description)
    except EndpointProblem as problem:
        _refused(problem)
    db.session.commit()
    return jsonify(endpoint_json(endpoint, schemas.WebhookEndpointCreated, secret=secret)), 201


@bp.get(f"/webhook-endpoints/{ENDPOINT_ID}")
def get_webhook_endpoint(endpoint_id: int):
    return jsonify(endpoint_json(endpoint_or_404(endpoint_id)))


@bp.patch(f"/webhook-endpoints/{ENDPOINT_ID}")
def update_webhook_endpoint(endpoint_id: int):
    endpoint = endpoint_or_404(endpoint_id)
    fields = parse_body(schemas.WebhookEndpointUpdate)
    try:
        change_endpoint(
            endpoint,
            url=fields.url,
            event_types=fields.event_types,
            description=fields.description,
            enabled=fields.enabled,
        )
    except EndpointProblem as problem:
        _refused(problem)
    db.session.commit()
    return jsonify(endpoint_json(endpoint))


@bp.delete(f"/webhook-endpoints/{ENDPOINT_ID}")
def delete_webhook_endpoint(endpoint_id: int):
    db.session.delete(endpoint_or_404(endpoint_id))
    db.session.commit()
    return "", 204


@bp.post(f"/webhook-endpoints/{ENDPOINT_ID}/rotate-secret")
def rotate_webhook_secret(endpoint_id: int):
    secret = rotate_secret(endpoint_or_404(endpoint_id))
    db.session.commit()
    return jsonify(dump(schemas.WebhookSecret, secret=secret))
