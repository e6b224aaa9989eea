"""The component's JSON endpoints as schemas: what the views validate and answer, and their OpenAPI operations.

They live in the same OpenAPI document as /v1 but with their own security
scheme, ``userToken`` (the host-signed JWT), instead of an API key.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.inbox.store import CURSOR_PATTERN, MAX_LIMIT
from app.inbox.tokens import LEEWAY_SECONDS, REASONS, SCOPES
from app.schemas import ErrorResponse, Strict

NotificationId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class EntryIds(Strict):
    ids: list[NotificationId] = Field(
        min_length=1,
        max_length=MAX_LIMIT,
        description="an entry's `ids` (archive) or `unread_ids` (mark read), as the list gave them; "
        "ids that are not in this user's inbox change nothing",
    )


class InboxEntry(BaseModel):
    ids: list[str] = Field(description="every notification of the entry (one, or a group sharing a collapse_key)")
    unread_ids: list[str]
    headline: str = Field(description='the title, or for a group "Ana and 4 others liked your photo"')
    body: str | None
    count: int
    unread: bool
    link: str | None = Field(description="data.url or data.deep_link when it is a safe http(s) or relative link")
    category: str
    created_at: str = Field(description="ISO 8601, of the newest member")
    when: str = Field(description="relative time in the user's locale")
    when_absolute: str = Field(description="date and time in the user's zone and locale")


class InboxEntriesPage(BaseModel):
    entries: list[InboxEntry]
    next_cursor: str | None
    unread_count: int


class MarkedRead(BaseModel):
    marked_read: int
    unread_count: int


class Archived(BaseModel):
    archived: int
    unread_count: int


class TokenErrorBody(BaseModel):
    code: Literal["invalid_token"]
    reason: Literal[tuple(REASONS)]  # type: ignore[valid-type]
    message: str


class TokenErrorResponse(BaseModel):
    error: TokenErrorBody


USER_TOKEN_DESCRIPTION = (
    "A user token the host product signs: a JWT, HS256 only, keyed with `HERALD_USER_TOKEN_SECRET`. Claims: `sub` "
    "(the user id, required), `exp` (required; at most `HERALD_USER_TOKEN_MAX_SECONDS` ahead), `iat` and `nbf` "
    f"(optional), `scope` (optional; space-separated; absent = all). Clock skew of {LEEWAY_SECONDS} s is allowed. Scopes: "
    + "; ".join(f"`{name}`: {meaning}" for name, meaning in SCOPES.items())
    + ". A refused token is a 401 whose `error.reason` is one of: "
    + ", ".join(f"`{r}`" for r in REASONS)
    + "."
)
LIST_QUERY = [
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 20},
        "description": "entries per page",
    },
    {
        "name": "cursor",
        "in": "query",
        "schema": {"type": "string", "pattern": CURSOR_PATTERN},
        "description": "next_cursor of the previous page (empty or absent: the first page)",
    },
    {"name": "unread_only", "in": "query", "schema": {"type": "string", "enum": ["true", "false"], "default": "false"}},
]

# (method, path, summary, parameters, request schema, {status: response schema})
OPERATIONS = [
    (
        "get",
        "/inbox/api/notifications",
        "The user's inbox as entries (grouped by collapse_key), newest first",
        LIST_QUERY,
        None,
        {"200": InboxEntriesPage, "400": ErrorResponse},
    ),
    ("post", "/inbox/api/read", "Mark notifications read", [], EntryIds, {"200": MarkedRead, "400": ErrorResponse}),
    ("post", "/inbox/api/read-all", "Mark the whole inbox read", [], None, {"200": MarkedRead}),
    (
        "post",
        "/inbox/api/archive",
        "Archive notifications (they leave the inbox)",
        [],
        EntryIds,
        {"200": Archived, "400": ErrorResponse},
    ),
]
MODELS = [EntryIds, InboxEntriesPage, MarkedRead, Archived, TokenErrorResponse]
