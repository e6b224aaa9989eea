"""The /v1 resources. Each view: parse, call one function, serialise."""

from __future__ import annotations

import json
import re

from flask import abort, current_app, g, jsonify, render_template, request
from pydantic import BaseModel, ValidationError

from app import device_schemas, schemas
from app.accept import IdempotencyConflict, UnknownRecipient, UnknownTemplate, accept_notification
from app.api import send_schemas
from app.api.auth import authenticate
from app.api.blueprint import bp
from app.api.openapi import build_openapi
from app.delivery.endpoints import push_endpoint_problem
from app.extensions import db
from app.inbox import store
from app.models import Notification, Recipient
from app.recipients import (
    erase_recipient,
    find_recipient,
    preferences_of,
    register_device,
    remove_device,
    set_preferences,
    upsert_recipient,
)
from app.topics.send import UnknownTopic, send_to_topic
from app.workflows.schemas import WorkflowRunAccepted, WorkflowTrigger
from app.workflows.trigger import UnknownWorkflow, trigger_workflow

bp.before_request(authenticate)


class BadRequest(Exception):
    def __init__(self, fields: list[dict], message: str = "the request is invalid"):
        self.fields, self.message = fields, message


@bp.errorhandler(BadRequest)
def _bad_request(error: BadRequest):
    return jsonify({"error": {"code": "invalid_request", "message": error.message, "fields": error.fields}}), 400


def _error(status: int, code: str, message: str):
    return jsonify({"error": {"code": code, "message": message}}), status


def parse_body(model: type[BaseModel]):
    """Validate the JSON body against a schema, strictly; every problem is reported with its field path.

    The raw body goes to pydantic's JSON parser, so each value keeps the JSON type it was sent as: strict
    mode refuses ``"12"`` for a number and ``0`` for a boolean instead of converting them.
    """
    if not request.is_json:
        raise BadRequest(
            [{"field": "(body)", "message": "send a JSON object with Content-Type: application/json"}],
            "the body must be a JSON object",
        )
    raw = request.get_data()
    if b"\\u0000" in raw:
        _refuse_nul(raw)
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        problems = error.errors()
        if any(not e["loc"] and e["type"] in ("json_invalid", "model_type") for e in problems):
            raise BadRequest(
                [{"field": "(body)", "message": "the body must be a JSON object"}], "the body must be a JSON object"
            ) from None
        raise BadRequest(
            [{"field": _field_of(e), "message": e["msg"].removeprefix("Value error, ")} for e in problems]
        ) from None


def _refuse_nul(raw: bytes) -> None:
    """U+0000 cannot be stored (PostgreSQL text and jsonb refuse it), so a string holding it is a 400, not a 500."""
    try:
        payload = json.loads(raw)
    except ValueError:
        return  # the parser names the problem
    where = nul_path(payload)
    if where is not None:
        raise BadRequest([{"field": where or "(body)", "message": "must not contain the character U+0000"}])


def nul_path(value, path: str = "") -> str | None:
    """The dotted path of the first string (or object key) holding U+0000, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        here = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and "\x00" in key:
            return here
        found = nul_path(item, here)
        if found is not None:
            return found
    return None


@bp.before_request
def _ids_without_nul():
    """An id holding U+0000 names nothing Herald can store: 404, as for any other unknown id."""
    if any("\x00" in str(value) for value in (request.view_args or {}).values()):
        abort(404, "no such resource")


def _field_of(error: dict) -> str:
    """The request field an error is about; whole-model checks name their field in ``ctx``."""
    named = (error.get("ctx") or {}).get("field")
    # A union's member (``constrained-int``, ``function-before[...]``) is pydantic's label, not a request field.
    parts = [str(part) for part in error["loc"] if not re.fullmatch(r"(constrained-\w+|function-\w+\[.*\])", str(part))]
    return named or ".".join(parts) or "(body)"


def dump(model: type[BaseModel], **fields) -> dict:
    return model.model_validate(fields).model_dump(mode="json")


def recipient_or_404(user_id: str) -> Recipient:
    recipient = find_recipient(user_id)
    if recipient is None:
        abort(404, f"user {user_id!r} does not exist")
    return recipient


def user_json(r: Recipient) -> dict:
    quiet = (
        {"start": r.quiet_start.strftime("%H:%M"), "end": r.quiet_end.strftime("%H:%M")}
        if r.quiet_start and r.quiet_end
        else None
    )
    return dump(
        schemas.User,
        user_id=r.external_id,
        email=r.email,
        phone=r.phone,
        timezone=r.timezone,
        locale=r.locale,
        attributes=r.attributes or {},
        quiet_hours=quiet,
        hard_stop=r.hard_stop,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def inbox_item_json(n: Notification) -> dict:
    return dump(
        schemas.InboxItem,
        id=n.id,
        type=n.type,
        category=n.category,
        title=n.title,
        body=n.body,
        data=n.data or {},
        collapse_key=n.collapse_key,
        created_at=n.inbox_at or n.created_at,
        read=n.read_at is not None,
    )


# -- users -------------------------------------------------------------------------------------

USER_ID = "<string(maxlength=255):user_id>"


@bp.put(f"/users/{USER_ID}")
def put_user(user_id: str):
    recipient, created = upsert_recipient(user_id, parse_body(schemas.UserUpsert))
    return jsonify(user_json(recipient)), (201 if created else 200)


@bp.get(f"/users/{USER_ID}")
def get_user(user_id: str):
    return jsonify(user_json(recipient_or_404(user_id)))


@bp.delete(f"/users/{USER_ID}")
def delete_user(user_id: str):
    erase_recipient(recipient_or_404(user_id), actor=f"api:{g.api_key.name}")
    return "", 204


@bp.get(f"/users/{USER_ID}/preferences")
def get_preferences(user_id: str):
    recipient = recipient_or_404(user_id)
    return jsonify(preferences_of(recipient))


@bp.put(f"/users/{USER_ID}/preferences")
def put_preferences(user_id: str):
    recipient = recipient_or_404(user_id)
    set_preferences(recipient, parse_body(schemas.PreferencesUpdate))
    return jsonify(preferences_of(recipient))


@bp.post(f"/users/{USER_ID}/devices")
def post_device(user_id: str):
    recipient = recipient_or_404(user_id)
    fields = parse_body(device_schemas.DeviceCreate)
    if fields.subscription:
        problem = push_endpoint_problem(fields.subscription.endpoint, current_app.config["WEB_PUSH_PRIVATE_HOSTS"])
        if problem:
            raise BadRequest([{"field": "subscription.endpoint", "message": problem}])
    device, created = register_device(recipient, fields)
    body = dump(
        device_schemas.Device,
        id=device.id,
        platform=device.platform,
        active=device.active,
        created_at=device.created_at,
    )
    return jsonify(body), (201 if created else 200)


@bp.delete(f"/users/{USER_ID}/devices/<int(max={2**63 - 1}):device_id>")
def delete_device(user_id: str, device_id: int):
    if not remove_device(recipient_or_404(user_id), device_id):
        abort(404, f"device {device_id} is not registered to user {user_id!r}")
    return "", 204


# -- notifications -----------------------------------------------------------------------------


def idempotency_key_of(body_key: str | None) -> str | None:
    """The request's idempotency key: the header, or the body's; both must agree when both are sent."""
    header_key = request.headers.get("Idempotency-Key")
    if header_key is not None and not re.fullmatch(schemas.IDEMPOTENCY_HEADER_PATTERN, header_key):
        raise BadRequest(
            [{"field": "Idempotency-Key", "message": "1 to 255 printable ASCII characters, no space at either end"}]
        )
    if header_key and body_key and header_key != body_key:
        raise BadRequest([{"field": "idempotency_key", "message": "differs from the Idempotency-Key header"}])
    return header_key or body_key


def accepted_json(accepted):
    if accepted.workflow_run_id is not None:
        body = dump(WorkflowRunAccepted, workflow_run_id=accepted.workflow_run_id, status=accepted.status)
        return jsonify(body), 202
    if accepted.run_id is not None:
        return jsonify(dump(send_schemas.RunAccepted, run_id=accepted.run_id, status=accepted.status)), 202
    return jsonify(dump(schemas.NotificationAccepted, id=accepted.id, status=accepted.status)), 202


def _is_trigger() -> bool:
    """A body naming a workflow is a trigger (app/workflows/trigger.py); the bytes are looked at before parsing."""
    if b'"workflow"' not in request.get_data():
        return False
    body = request.get_json(silent=True)
    return isinstance(body, dict) and "workflow" in body


@bp.post("/notifications")
def post_notification():
    payload = parse_body(WorkflowTrigger if _is_trigger() else send_schemas.SendRequest)
    key = idempotency_key_of(payload.idempotency_key)
    try:
        if isinstance(payload, WorkflowTrigger):
            accepted = trigger_workflow(payload, g.api_key.id, key)
        elif payload.topic is not None:
            accepted = send_to_topic(payload, g.api_key.id, key)
        else:
            accepted = accept_notification(payload, g.api_key.id, key)
    except UnknownRecipient:
        return _error(
            404, "unknown_user", f"user {payload.user_id!r} does not exist; create it with PUT /v1/users/{{user_id}}"
        )
    except UnknownTopic:
        return _error(
            404, "unknown_topic", f"no topic with key {payload.topic!r}; create it with PUT /v1/topics/{{key}}"
        )
    except UnknownTemplate:
        return _error(404, "unknown_template", f"no template with key {payload.template!r}")
    except UnknownWorkflow:
        return _error(404, "unknown_workflow", f"no workflow with key {payload.workflow!r}")
    except IdempotencyConflict:
        return _error(
            409, "idempotency_conflict", "this Idempotency-Key was used in the last 24 h with a different request body"
        )
    return accepted_json(accepted)


NOTIFICATION_ID = "<string(length=32):notification_id>"


def notification_or_404(notification_id: str) -> Notification:
    notification = db.session.get(Notification, notification_id)
    if notification is None:
        abort(404, f"notification {notification_id!r} does not exist")
    return notification


@bp.get(f"/notifications/{NOTIFICATION_ID}")
def get_notification(notification_id: str):
    n = notification_or_404(notification_id)
    recipient = db.session.get(Recipient, n.recipient_id)
    deliveries = [
        {
            "channel": d.channel,
            "status": d.status,
            "attempts": d.attempts,
            "reason": d.reason,
            "error_code": d.error_code,
            "last_error": d.last_error,
            "not_before": d.not_before,
            "events": [{"status": e.status, "detail": e.detail, "at": e.created_at} for e in d.events],
        }
        for d in n.deliveries
    ]
    return jsonify(
        dump(
            schemas.NotificationOut,
            id=n.id,
            user_id=recipient.external_id,
            type=n.type,
            category=n.category,
            priority=n.priority,
            status=n.status,
            title=n.title,
            body=n.body,
            data=n.data or {},
            collapse_key=n.collapse_key,
            created_at=n.created_at,
            read_at=n.read_at,
            clicked_at=n.clicked_at,
            clicked_channel=n.clicked_channel,
            deliveries=deliveries,
        )
    )


@bp.get(f"/users/{USER_ID}/notifications")
def list_notifications(user_id: str):
    recipient = recipient_or_404(user_id)
    limit_text = request.args.get("limit", "20")
    if not re.fullmatch(r"-?[0-9]{1,6}", limit_text) or not 1 <= int(limit_text) <= store.MAX_LIMIT:
        raise BadRequest([{"field": "limit", "message": f"must be an integer from 1 to {store.MAX_LIMIT}"}])
    unread_text = request.args.get("unread_only", "false")
    if unread_text not in ("true", "false"):
        raise BadRequest([{"field": "unread_only", "message": "must be true or false"}])
    cursor = request.args.get("cursor")
    if cursor is not None and not re.fullmatch(store.CURSOR_PATTERN, cursor):
        raise BadRequest([{"field": "cursor", "message": "must be a next_cursor this API returned"}])
    try:
        items, next_cursor = store.inbox_page(recipient.id, int(limit_text), cursor, unread_text == "true")
    except store.BadCursor as error:
        raise BadRequest([{"field": "cursor", "message": str(error)}]) from None
    return jsonify(
        dump(
            schemas.InboxPage,
            items=[inbox_item_json(n) for n in items],
            next_cursor=next_cursor,
            unread_count=store.unread_count(recipient.id),
        )
    )


@bp.patch(f"/notifications/{NOTIFICATION_ID}/read")
def read_notification(notification_id: str):
    # A broadcast's entry (app/broadcasts/) has its reader's copy written first, if the broadcast targets them.
    notification = store.broadcast_copy(notification_id) or notification_or_404(notification_id)
    store.mark_read(notification)
    return jsonify(inbox_item_json(notification))


@bp.post(f"/users/{USER_ID}/notifications/read-all")
def read_all(user_id: str):
    count = store.mark_all_read(recipient_or_404(user_id).id)
    return jsonify(dump(schemas.ReadAllResult, marked_read=count))


# -- documentation -----------------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(build_openapi(current_app.config["BASE_URL"]))


@bp.get("/docs")
def docs():
    return render_template("api/docs.html", spec=build_openapi(current_app.config["BASE_URL"]))
