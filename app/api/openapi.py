"""The OpenAPI 3.1 document, generated from the pydantic schemas that validate requests."""
from __future__ import annotations

from functools import lru_cache

from pydantic.json_schema import models_json_schema

from app import schemas
from app.api import send_schemas
from app.api.scopes import SCOPES
from app.inbox import embed_schemas
from app.inbox.store import CURSOR_PATTERN, MAX_LIMIT
from app.outbound_webhooks import schemas as webhook_schemas
from app.rules import schemas as rule_schemas
from app.topics import schemas as topic_schemas

REF = "#/components/schemas/{model}"
SECURITY_DESCRIPTION = (
    "An API key from `flask create-api-key NAME --scope …` or the console, sent as `Authorization: Bearer <key>`. "
    "Each key holds scopes; each operation names the one it needs, and a key without it gets 403 naming the "
    "missing scope. Scopes: " + "; ".join(f"`{name}`: {meaning}" for name, meaning in SCOPES.items()) + ".")

USER_ID = {"name": "user_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 255},
           "description": "The host product's id for the user. A longer id cannot exist: 404."}
NOTIFICATION_ID = {"name": "notification_id", "in": "path", "required": True,
                   "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
DEVICE_ID = {"name": "device_id", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}}
IDEMPOTENCY_HEADER = {"name": "Idempotency-Key", "in": "header", "required": False,
                      "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                                 "pattern": schemas.IDEMPOTENCY_HEADER_PATTERN},
                      "description": "Printable ASCII, no space at either end. " + schemas.IDEMPOTENCY_KEY_DESCRIPTION}
INBOX_QUERY = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 20}},
    {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": CURSOR_PATTERN},
     "description": "next_cursor of the previous page (empty or absent: the first page)"},
    {"name": "unread_only", "in": "query", "schema": {"type": "boolean", "default": False},
     "description": "`true` or `false`"},
]
TOPIC_KEY = {"name": "key", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": topic_schemas.TOPIC_KEY_PATTERN},
             "description": "The topic's key (your own id for it, e.g. `team-42`). Reading an unknown key is 404."}
SUBSCRIBER_QUERY = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": topic_schemas.MAX_PAGE, "default": 50}},
    {"name": "cursor", "in": "query",
     "schema": {"type": "string", "pattern": "^([0-9]{1,18})?$"},
     "description": "next_cursor of the previous page (empty or absent: the first page)"},
]
BULK_IDEMPOTENCY_HEADER = {**IDEMPOTENCY_HEADER, "description": (
    "Audience sends only (or the notification's idempotency_key): same key + same body within 24 h returns the same run; "
    "a different body is 409. Items carry their own idempotency_key; with items the header is not used.")}
ENDPOINT_ID = {"name": "endpoint_id", "in": "path", "required": True,
               "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}}
NOT_FOUND = {"description": "no such user, notification or device (ids over their maximum length included)",
             "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}}}

# (method, path, scope the API key needs, summary, parameters, request schema, {status: response schema or None})
OPERATIONS = [
    ("put", "/v1/users/{user_id}", "users:write", "Create or update a recipient", [USER_ID], schemas.UserUpsert,
     {"200": schemas.User, "201": schemas.User, "400": schemas.ErrorResponse}),
    ("get", "/v1/users/{user_id}", "users:read", "Read a recipient", [USER_ID], None, {"200": schemas.User, "404": schemas.ErrorResponse}),
    ("delete", "/v1/users/{user_id}", "users:erase", "Erase a recipient and all their data (GDPR)", [USER_ID], None,
     {"204": None, "404": schemas.ErrorResponse}),
    ("get", "/v1/users/{user_id}/preferences", "users:read", "Read preferences", [USER_ID], None,
     {"200": schemas.Preferences, "404": schemas.ErrorResponse}),
    ("put", "/v1/users/{user_id}/preferences", "users:write", "Change preferences, quiet hours, hard stop", [USER_ID], schemas.PreferencesUpdate,
     {"200": schemas.Preferences, "400": schemas.ErrorResponse, "404": schemas.ErrorResponse}),
    ("post", "/v1/users/{user_id}/devices", "users:write", "Register a mobile token or web-push subscription", [USER_ID], schemas.DeviceCreate,
     {"200": schemas.Device, "201": schemas.Device, "400": schemas.ErrorResponse, "404": schemas.ErrorResponse}),
    ("delete", "/v1/users/{user_id}/devices/{device_id}", "users:write", "Remove a device", [USER_ID, DEVICE_ID], None,
     {"204": None, "404": schemas.ErrorResponse}),
    ("post", "/v1/notifications", "notifications:send", "Send a notification to a user, or to a topic's subscribers",
     [IDEMPOTENCY_HEADER], send_schemas.SendRequest,
     {"202": send_schemas.SendAccepted, "400": schemas.ErrorResponse, "404": schemas.ErrorResponse,
      "409": schemas.ErrorResponse, "429": schemas.ErrorResponse}),
    ("get", "/v1/notifications/{notification_id}", "notifications:read", "Status per channel, attempts and events", [NOTIFICATION_ID], None,
     {"200": schemas.NotificationOut, "404": schemas.ErrorResponse}),
    ("get", "/v1/users/{user_id}/notifications", "notifications:read", "A recipient's inbox, newest first", [USER_ID, *INBOX_QUERY], None,
     {"200": schemas.InboxPage, "400": schemas.ErrorResponse, "404": schemas.ErrorResponse}),
    ("patch", "/v1/notifications/{notification_id}/read", "notifications:write", "Mark one notification read", [NOTIFICATION_ID], None,
     {"200": schemas.InboxItem, "404": schemas.ErrorResponse}),
    ("post", "/v1/users/{user_id}/notifications/read-all", "notifications:write", "Mark a recipient's whole inbox read", [USER_ID], None,
     {"200": schemas.ReadAllResult, "404": schemas.ErrorResponse}),
    ("patch", "/v1/users/{user_id}/attributes", "users:write", "Merge attributes (null deletes a key)", [USER_ID], rule_schemas.AttributesPatch,
     {"200": schemas.User, "400": schemas.ErrorResponse, "404": schemas.ErrorResponse}),
    ("post", "/v1/users:batch", "users:write", "Upsert up to 10,000 users at once, all or nothing", [], rule_schemas.UsersBatch,
     {"200": rule_schemas.BatchResult, "400": schemas.ErrorResponse}),
    # -- topics and bulk sends (issue 17) --
    ("post", "/v1/notifications/bulk", "notifications:send",
     "Send up to 1,000 notifications in one call (all validated before any is stored), or one to a saved audience",
     [BULK_IDEMPOTENCY_HEADER], send_schemas.BulkSend,
     {"202": send_schemas.BulkResult, "400": schemas.ErrorResponse, "404": schemas.ErrorResponse,
      "409": schemas.ErrorResponse}),
    ("put", "/v1/topics/{key}", "topics:write", "Create or update a topic", [TOPIC_KEY], topic_schemas.TopicUpsert,
     {"200": topic_schemas.Topic, "201": topic_schemas.Topic, "400": schemas.ErrorResponse}),
    ("get", "/v1/topics/{key}", "topics:read", "Read a topic and its subscriber count", [TOPIC_KEY], None,
     {"200": topic_schemas.Topic, "404": schemas.ErrorResponse}),
    ("put", "/v1/topics/{key}/subscribers", "topics:write", "Add up to 1,000 subscribers (unknown user ids are created)",
     [TOPIC_KEY], topic_schemas.SubscribersChange,
     {"200": topic_schemas.SubscribersChanged, "400": schemas.ErrorResponse, "404": schemas.ErrorResponse}),
    ("delete", "/v1/topics/{key}/subscribers", "topics:write", "Remove up to 1,000 subscribers", [TOPIC_KEY],
     topic_schemas.SubscribersChange,
     {"200": topic_schemas.SubscribersChanged, "400": schemas.ErrorResponse, "404": schemas.ErrorResponse}),
    ("get", "/v1/topics/{key}/subscribers", "topics:read", "A topic's subscribers, a page at a time", [TOPIC_KEY, *SUBSCRIBER_QUERY],
     None, {"200": topic_schemas.SubscriberPage, "400": schemas.ErrorResponse, "404": schemas.ErrorResponse}),
    ("get", "/v1/users/{user_id}/topics", "topics:read", "The topics a recipient is in", [USER_ID], None,
     {"200": topic_schemas.UserTopics, "404": schemas.ErrorResponse}),
    # -- outbound webhooks (app/outbound_webhooks/) --
    ("get", "/v1/webhook-endpoints", "webhooks:manage", "List webhook endpoints", [], None,
     {"200": webhook_schemas.WebhookEndpointList}),
    ("post", "/v1/webhook-endpoints", "webhooks:manage", "Register a webhook endpoint (its secret is shown once)", [],
     webhook_schemas.WebhookEndpointCreate, {"201": webhook_schemas.WebhookEndpointCreated, "400": schemas.ErrorResponse}),
    ("get", "/v1/webhook-endpoints/{endpoint_id}", "webhooks:manage", "Read a webhook endpoint", [ENDPOINT_ID], None,
     {"200": webhook_schemas.WebhookEndpointOut, "404": schemas.ErrorResponse}),
    ("patch", "/v1/webhook-endpoints/{endpoint_id}", "webhooks:manage", "Change, disable or enable a webhook endpoint",
     [ENDPOINT_ID], webhook_schemas.WebhookEndpointUpdate,
     {"200": webhook_schemas.WebhookEndpointOut, "400": schemas.ErrorResponse, "404": schemas.ErrorResponse}),
    ("delete", "/v1/webhook-endpoints/{endpoint_id}", "webhooks:manage", "Delete a webhook endpoint and its messages",
     [ENDPOINT_ID], None, {"204": None, "404": schemas.ErrorResponse}),
    ("post", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret", "webhooks:manage",
     "New signing secret (the old one signs too for 24 h)", [ENDPOINT_ID], None,
     {"200": webhook_schemas.WebhookSecret, "404": schemas.ErrorResponse}),
]


OPERATION_SCOPES = {(method, path): scope for method, path, scope, *_ in OPERATIONS}


def _ref(model) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


@lru_cache(maxsize=4)
def build_openapi(base_url: str) -> dict:
    models = {model for op in OPERATIONS for model in [op[5], *op[6].values()] if model is not None} | set(embed_schemas.MODELS)
    requests = {op[5] for op in OPERATIONS} | {op[4] for op in embed_schemas.OPERATIONS}
    _, definitions = models_json_schema(
        [(model, "validation" if model in requests else "serialization") for model in sorted(models, key=lambda m: m.__name__)],
        ref_template=REF,
    )
    paths: dict = {}
    for method, path, scope, summary, parameters, request_model, responses in OPERATIONS:
        operation = {
            "summary": summary,
            "operationId": f"{method}_{path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
            "description": f"Needs an API key with the `{scope}` scope.",
            "security": [{"bearer": [scope]}],
            "parameters": parameters,
            "responses": {
                status: {"description": status, **({"content": {"application/json": {"schema": _ref(model)}}} if model else {})}
                for status, model in responses.items()
            },
        }
        operation["responses"]["401"] = {"description": "missing or unknown API key",
                                         "content": {"application/json": {"schema": _ref(schemas.ErrorResponse)}}}
        operation["responses"].setdefault("429", {"description": "the API key's rate limit is spent; see Retry-After",
                                                  "content": {"application/json": {"schema": _ref(schemas.ErrorResponse)}}})
        if any(parameter["in"] == "path" for parameter in parameters):
            operation["responses"].setdefault("404", NOT_FOUND)
        operation["responses"]["403"] = {"description": f"the API key lacks the `{scope}` scope (named in error.missing_scope)",
                                         "content": {"application/json": {"schema": _ref(schemas.ErrorResponse)}}}
        if request_model is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(request_model)}}}
        paths.setdefault(path, {})[method] = operation
    paths.update(_embed_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Herald API", "version": "1.0.0",
                 "description": "Send notifications, manage recipients, preferences, devices and inboxes. "
                                "Values are taken as the JSON type they are sent as, or refused (400). "
                                "No string anywhere may contain U+0000, which PostgreSQL cannot store: 400 in a "
                                "body, 404 in a path."},
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": SECURITY_DESCRIPTION},
                                "userToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                              "description": embed_schemas.USER_TOKEN_DESCRIPTION}},
        },
    }


def _embed_paths() -> dict:
    """The ``<herald-inbox>`` component's endpoints: a user token (``userToken``), not an API key; CORS per HERALD_EMBED_ORIGINS."""
    paths: dict = {}
    for method, path, summary, parameters, request_model, responses in embed_schemas.OPERATIONS:
        operation = {
            "summary": summary,
            "operationId": f"{method}_{path.strip('/').replace('/', '_').replace('-', '_')}",
            "tags": ["embedded inbox"],
            "description": "For the `<herald-inbox>` component and host products: needs a user token with the `inbox` "
                           "scope. Browsers on an origin in `HERALD_EMBED_ORIGINS` may call it (CORS, without cookies).",
            "security": [{"userToken": ["inbox"]}],
            "parameters": parameters,
            "responses": {status: {"description": status, "content": {"application/json": {"schema": _ref(model)}}}
                          for status, model in responses.items()},
        }
        operation["responses"]["401"] = {"description": "no user token, or one Herald refuses; error.reason says why",
                                         "content": {"application/json": {"schema": _ref(embed_schemas.TokenErrorResponse)}}}
        if request_model is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(request_model)}}}
        paths[path] = {method: operation}
    return paths
