"""Schemas of sends to more than one person: to a topic, in bulk (up to 1,000 items), to a saved audience.

They extend the single send's :class:`app.schemas.NotificationCreate`, so every content rule (template or
title/body, each channel's limits, strict values) is the same one, stated once.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from app.schemas import NotificationAccepted, NotificationCreate, Strict, _content_rules, _no
from app.topics.schemas import TOPIC_KEY_PATTERN, UserId

MAX_EXCLUDE = 1000
MAX_BULK_ITEMS = 1000


def _integral(value):
    """JSON Schema calls 3.0 an integer; so does this (a boolean stays refused: it is not a number in JSON)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


AudienceId = Annotated[int, Field(ge=1, le=2**63 - 1), BeforeValidator(_integral)]


def _present(field: str) -> dict:
    return {"required": [field], "properties": {field: {"not": {"type": "null"}}}}


_ONE_RECIPIENT = {
    "oneOf": [{"allOf": [_present("user_id"), _no("topic")]}, {"allOf": [_present("topic"), _no("user_id")]}]
}
_EXCLUDE_NEEDS_TOPIC = {"if": _present("exclude"), "then": _present("topic")}


class SendRequest(NotificationCreate):
    """``POST /v1/notifications``: one user (``user_id``) or every subscriber of a topic (``topic``, minus ``exclude``)."""

    model_config = ConfigDict(
        json_schema_extra={"allOf": [*_content_rules()["allOf"], _ONE_RECIPIENT, _EXCLUDE_NEEDS_TOPIC]}
    )

    user_id: str | None = Field(
        None, min_length=1, max_length=255, description="The recipient; or give `topic` (exactly one)"
    )
    topic: str | None = Field(
        None,
        pattern=TOPIC_KEY_PATTERN,
        description=(
            "A topic's key instead of `user_id`: every subscriber gets it through a run (202 with `run_id`, progress in "
            "the console); an unknown topic is 404"
        ),
    )
    exclude: list[UserId] | None = Field(
        None,
        max_length=MAX_EXCLUDE,
        description=(f"With `topic` only: up to {MAX_EXCLUDE} user ids to leave out (e.g. the actor)"),
    )

    @model_validator(mode="after")
    def _one_recipient(self) -> SendRequest:
        if (self.user_id is None) == (self.topic is None):
            raise PydanticCustomError(
                "one_recipient",
                "give exactly one of user_id and topic",
                {"field": "topic" if self.topic is not None else "user_id"},
            )
        if self.exclude is not None and self.topic is None:
            raise PydanticCustomError(
                "exclude_needs_topic", "exclude goes with topic, not with user_id", {"field": "exclude"}
            )
        return self


class RunContent(NotificationCreate):
    """The one payload of a send to a saved audience: a single send without ``user_id``."""

    model_config = ConfigDict(json_schema_extra=_content_rules())

    user_id: SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _no_user(self) -> RunContent:
        if "user_id" in self.model_fields_set:  # null included: the document has no such field
            raise PydanticCustomError(
                "no_user_id",
                "an audience send goes to the audience; leave user_id out",
                {"field": "notification.user_id"},
            )
        return self


_ITEMS_OR_AUDIENCE = {
    "oneOf": [
        {"allOf": [_present("items"), _no("audience"), _no("notification")]},
        {"allOf": [_present("audience"), _present("notification"), _no("items")]},
    ]
}


class BulkSend(Strict):
    """``POST /v1/notifications/bulk``: ``items`` (each a single send), or ``audience`` with one ``notification``.

    Items are validated all before any is accepted: one bad item is a 400 (or an unknown user or template a 404)
    naming it, and nothing is stored. Then all are stored in one transaction.
    """

    model_config = ConfigDict(json_schema_extra=_ITEMS_OR_AUDIENCE)

    items: list[NotificationCreate] | None = Field(
        None,
        min_length=1,
        max_length=MAX_BULK_ITEMS,
        description=(
            f"Up to {MAX_BULK_ITEMS:,} single sends, each with its own user_id, content and optional idempotency_key; "
            "all are validated before any is stored (all or nothing), in one transaction"
        ),
    )
    audience: AudienceId | Annotated[str, Field(min_length=1, max_length=255)] | None = Field(
        None,
        description="Instead of items: a saved audience's id or name; `notification` goes to everyone in it, "
        "through a run (202 with `run_id`)",
    )
    notification: RunContent | None = Field(None, description="With `audience`: the one payload")

    @model_validator(mode="after")
    def _items_or_audience(self) -> BulkSend:
        if self.items is not None and (self.audience is not None or self.notification is not None):
            raise PydanticCustomError(
                "items_or_audience", "give items, or audience with notification, not both", {"field": "items"}
            )
        if self.items is None and (self.audience is None or self.notification is None):
            missing = (
                "items"
                if self.audience is None and self.notification is None
                else ("audience" if self.audience is None else "notification")
            )
            raise PydanticCustomError(
                "items_or_audience", "give items, or audience with notification", {"field": missing}
            )
        return self


class RunAccepted(BaseModel):
    """A send to a topic or an audience: a run (a campaign made by the API) fans it out; the console shows it."""

    run_id: int
    status: str


class SendAccepted(RootModel[NotificationAccepted | RunAccepted]):
    """A notification's id for a send to a user; a run's id for a send to a topic."""


class BulkItemAccepted(BaseModel):
    id: str
    status: str
    replayed: bool = Field(description="true when the item's idempotency_key was used before with the same body")


class BulkAccepted(BaseModel):
    items: list[BulkItemAccepted] = Field(description="One result per item, in the order sent")


class BulkResult(RootModel[BulkAccepted | RunAccepted]):
    """Per-item results for items; a run's id for an audience."""
