"""The OpenAPI parameter objects of /v1: path ids, headers and query strings, shared by the operations table.

Each states the rules its route enforces (lengths, patterns, ranges), so the document and the checks agree.
"""

from __future__ import annotations

from app import schemas
from app.inbox.store import CURSOR_PATTERN, MAX_LIMIT
from app.topics import schemas as topic_schemas

USER_ID = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "The host product's id for the user. A longer id cannot exist: 404.",
}
NOTIFICATION_ID = {
    "name": "notification_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
DEVICE_ID = {
    "name": "device_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
}
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": schemas.IDEMPOTENCY_HEADER_PATTERN},
    "description": "Printable ASCII, no space at either end. " + schemas.IDEMPOTENCY_KEY_DESCRIPTION,
}
INBOX_QUERY = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 20}},
    {
        "name": "cursor",
        "in": "query",
        "schema": {"type": "string", "pattern": CURSOR_PATTERN},
        "description": "next_cursor of the previous page (empty or absent: the first page)",
    },
    {
        "name": "unread_only",
        "in": "query",
        "schema": {"type": "boolean", "default": False},
        "description": "`true` or `false`",
    },
]
TOPIC_KEY = {
    "name": "key",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": topic_schemas.TOPIC_KEY_PATTERN},
    "description": "The topic's key (your own id for it, e.g. `team-42`). Reading an unknown key is 404.",
}
SUBSCRIBER_QUERY = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": topic_schemas.MAX_PAGE, "default": 50},
    },
    {
        "name": "cursor",
        "in": "query",
        "schema": {"type": "string", "pattern": "^([0-9]{1,18})?$"},
        "description": "next_cursor of the previous page (empty or absent: the first page)",
    },
]
BULK_IDEMPOTENCY_HEADER = {
    **IDEMPOTENCY_HEADER,
    "description": (
        "Audience sends only (or the notification's idempotency_key): same key + same body within 24 h returns the same run; "
        "a different body is 409. Items carry their own idempotency_key; with items the header is not used."
    ),
}
ENDPOINT_ID = {
    "name": "endpoint_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
}
