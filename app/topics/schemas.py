"""Request and response schemas of /v1/topics (see app/schemas.py for the conventions: strict, no unknown fields)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from app.schemas import Strict

TOPIC_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
UserId = Annotated[str, Field(min_length=1, max_length=255)]
MAX_SUBSCRIBERS_PER_CALL = 1000
MAX_PAGE = 100
SUBSCRIBER_CURSOR_PATTERN = r"^[0-9]{1,18}$"
TopicKey = Annotated[str, Field(pattern=TOPIC_KEY_PATTERN)]


class TopicUpsert(Strict):
    name: str = Field(
        min_length=1, max_length=255, description="Shown in the console and on the inbox's preferences page"
    )
    user_can_leave: bool = Field(
        True, description="Whether a subscriber may leave the topic from the inbox's preferences page"
    )


class Topic(BaseModel):
    key: str
    name: str
    user_can_leave: bool
    subscribers: int
    created_at: datetime
    updated_at: datetime


class SubscribersChange(Strict):
    user_ids: list[UserId] = Field(
        min_length=1,
        max_length=MAX_SUBSCRIBERS_PER_CALL,
        description=(
            f"Up to {MAX_SUBSCRIBERS_PER_CALL:,} user ids; repeats count once. Adding: a user id Herald does not know yet "
            "is created (with no address, as PUT /v1/users/{user_id} with an empty body would). Removing: unknown ids and "
            "ids not in the topic are ignored."
        ),
    )


class SubscribersChanged(BaseModel):
    added: int = Field(0, description="subscriptions made by this call (already subscribed: not counted)")
    removed: int = Field(0, description="subscriptions ended by this call")
    created_users: list[str] = Field(default_factory=list, description="user ids this call created")
    subscribers: int = Field(description="the topic's subscribers after the call")


class Subscriber(BaseModel):
    user_id: str
    subscribed_at: datetime


class SubscriberPage(BaseModel):
    items: list[Subscriber]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class UserTopic(BaseModel):
    key: str
    name: str
    user_can_leave: bool
    subscribed_at: datetime


class UserTopics(BaseModel):
    topics: list[UserTopic]
