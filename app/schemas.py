"""Request and response schemas of the /v1 API.

These pydantic models validate every request *and* generate the OpenAPI
document (app/api/openapi.py), so the docs cannot drift from what the API
accepts. Unknown fields are rejected: a typo in a field name is an error,
not a silently ignored setting. Validation is strict: a value is taken as
the JSON type it was sent as or refused (``"1"`` is not a number, ``0`` is not
a boolean), and every rule a validator enforces is also written into the
schema (a pattern, an enum, a length, a format, an ``anyOf``) so that the
document states it.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Any, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.channels import channel_names, content_fields
from app.delivery.rendering import FIELD_LIMITS
from app.json_values import E164_PATTERN, TIME_ZONES, EmailField, PhoneField, StoredAttributes, TimeZoneField

Channel = Literal[channel_names()]  # the channel registry (app/channels/) is the one list
NotificationType = Literal["marketing", "transactional", "security"]
Priority = Literal["low", "normal", "high", "critical"]

CATEGORY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
LOCALE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
HHMM_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class Strict(BaseModel):
    """A request body: unknown fields and type coercion are both refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


def parse_email(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        # Lower-case as a whole: mailbox names are case-insensitive in practice, and one spelling
        # is what lets suppression lists (bounces, complaints) match by plain equality.
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None


def parse_e164(value: str | None) -> str | None:
    """Accept only numbers already in E.164 (``+14155551234``) that are valid numbers."""
    if value is None or value == "":
        return None
    if not re.fullmatch(E164_PATTERN, value):
        raise ValueError("must be in E.164 format, e.g. +14155551234")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_timezone(value: str | None) -> str | None:
    """An IANA zone name from the set the document lists (``available_timezones()``), or None for empty."""
    if value is None or value == "":
        return None
    if value not in TIME_ZONES:
        raise ValueError(f"unknown IANA time zone {value!r}, e.g. Europe/Lisbon")
    return value


class QuietHours(Strict):
    start: str = Field(
        pattern=HHMM_PATTERN, description="Local time HH:MM (24-hour) when the quiet window starts", examples=["22:00"]
    )
    end: str = Field(
        pattern=HHMM_PATTERN,
        description="Local time HH:MM (24-hour) when it ends (may be the next day)",
        examples=["07:00"],
    )

    def as_times(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


class ContactFields(Strict):
    """Validation shared by every request that sets a recipient's email, phone or time zone."""

    @field_validator("email", check_fields=False)
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return parse_email(value)

    @field_validator("phone", check_fields=False)
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return parse_e164(value)

    @field_validator("timezone", check_fields=False)
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return parse_timezone(value)


class UserUpsert(ContactFields):
    email: EmailField = Field(None, max_length=320, examples=["ana@example.com"])
    phone: PhoneField = Field(None, examples=["+14155551234"])
    timezone: TimeZoneField = Field(None, examples=["Asia/Singapore"])
    locale: str | None = Field(None, pattern=LOCALE_PATTERN, examples=["pt-BR"])
    attributes: StoredAttributes | None = Field(
        None, description="Flat attributes (strings, numbers, booleans, lists of those), replaced as a whole"
    )
    quiet_hours: QuietHours | None = None


class User(BaseModel):
    user_id: str
    email: str | None
    phone: str | None
    timezone: str | None
    locale: str
    attributes: dict[str, Any]
    quiet_hours: QuietHours | None
    hard_stop: bool
    created_at: datetime
    updated_at: datetime


class PreferenceItem(Strict):
    channel: Channel
    category: str = Field(pattern=CATEGORY_PATTERN + "|^\\*$", description='A category, or "*" for the whole channel')
    enabled: bool = Field(description="true or false; nothing else is a boolean")


class DigestItem(Strict):
    category: str = Field(pattern=CATEGORY_PATTERN, description="A category (templates name theirs)")
    frequency: Literal["default", "off", "hourly", "daily"] = Field(
        description="How a workflow's digest step bundles this category for the recipient: `off` = not held, each "
        "notification goes on at once; `hourly` = windows of at least an hour; `daily` = until the next 09:00 in "
        "the recipient's time zone (UTC without one); either way at least the workflow's own window. `default` "
        "(in a request) removes the choice: the workflow's own window. Security notices ignore it."
    )


class PreferencesUpdate(Strict):
    preferences: list[PreferenceItem] = Field(default_factory=list, max_length=500)
    digests: list[DigestItem] = Field(
        default_factory=list, max_length=500, description="Digest frequency per category; unlisted ones keep theirs"
    )
    quiet_hours: QuietHours | None = None
    clear_quiet_hours: bool = False
    hard_stop: bool | None = Field(None, description="Global stop: nothing is sent while true")


class Preferences(BaseModel):
    preferences: list[PreferenceItem]
    digests: list[DigestItem] = Field(description="The categories with a digest frequency chosen")
    quiet_hours: QuietHours | None
    hard_stop: bool


def _no(field: str) -> dict:
    return {"not": {"required": [field], "properties": {field: {"not": {"type": "null"}}}}}


def _content_rules() -> dict:
    """The body rules no single field states: content is required, and literal text must fit every channel asked for."""
    present = {"type": "string", "minLength": 1}
    has_content = {
        "anyOf": [{"required": [field], "properties": {field: present}} for field in ("template", "title", "body")]
    }
    fits = []
    for channel, fields in content_fields().items():
        # Literal text lands in the channel's field of the same name, else in its last one (SMS: "text").
        limits = {
            field: FIELD_LIMITS.get((channel, field if field in fields else fields[-1])) for field in ("title", "body")
        }
        if any(limits.values()):
            fits.append(
                {
                    "if": {"required": ["channels"], "properties": {"channels": {"contains": {"const": channel}}}},
                    "then": {"properties": {field: {"maxLength": limit} for field, limit in limits.items() if limit}},
                }
            )
    return {"allOf": [has_content, *fits]}


IDEMPOTENCY_HEADER_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"
IDEMPOTENCY_KEY_DESCRIPTION = (
    "Or the Idempotency-Key header; when both are sent they must be equal. "
    "Same key + same body within 24 h returns the first answer; a different body is 409."
)


class NotificationCreate(Strict):
    """A template key, or a non-empty title and/or body; literal text within every requested channel's limit."""

    model_config = ConfigDict(json_schema_extra=_content_rules())

    user_id: str = Field(min_length=1, max_length=255)
    type: NotificationType
    category: str = Field("general", pattern=CATEGORY_PATTERN)
    template: str | None = Field(None, max_length=128, description="Template key; an unknown key is 404")
    title: str | None = Field(None, max_length=500)
    body: str | None = Field(None, max_length=10_000)
    data: dict[str, Any] = Field(default_factory=dict, description="Payload for deep links, available to templates")
    channels: list[Channel] = Field(
        min_length=1, max_length=5, json_schema_extra={"uniqueItems": True}, description="Each channel at most once"
    )
    priority: Priority = "normal"
    idempotency_key: str | None = Field(None, min_length=1, max_length=255, description=IDEMPOTENCY_KEY_DESCRIPTION)
    send_at: datetime | None = Field(None, description="RFC 3339 date-time with a UTC offset; later delivery")
    collapse_key: str | None = Field(None, max_length=255)

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each channel may appear once")
        return value

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a UTC offset, e.g. 2026-01-01T09:00:00Z")
        return value

    @model_validator(mode="after")
    def _has_content(self) -> NotificationCreate:
        if not self.template and not (self.title or self.body):
            raise ValueError("give a template key, or a title and/or body")
        return self

    @model_validator(mode="after")
    def _fits_every_channel(self) -> NotificationCreate:
        """A literal body longer than a requested channel accepts is refused now, not failed later."""
        for channel in self.channels:
            for field, text, limit_field in (("body", self.body, "body"), ("title", self.title, "title")):
                # A channel with only a text field (SMS) carries title and body in it.
                limit = FIELD_LIMITS.get((channel, limit_field)) or FIELD_LIMITS.get((channel, "text"))
                if text and limit and len(text) > limit:
                    raise PydanticCustomError(
                        "too_long_for_channel",
                        "{field} has {length} characters; {channel} accepts at most {limit}",
                        {"field": field, "length": len(text), "channel": channel, "limit": limit},
                    )
        return self


class NotificationAccepted(BaseModel):
    id: str
    status: str


class DeliveryEventOut(BaseModel):
    status: str
    detail: str | None
    at: datetime


class DeliveryOut(BaseModel):
    channel: str
    status: str
    attempts: int
    reason: str | None
    error_code: str | None
    last_error: str | None
    not_before: datetime | None
    events: list[DeliveryEventOut]


class NotificationOut(BaseModel):
    id: str
    user_id: str
    type: str
    category: str
    priority: str
    status: str
    title: str | None
    body: str | None
    data: dict[str, Any]
    collapse_key: str | None
    created_at: datetime
    read_at: datetime | None
    clicked_at: datetime | None = Field(description="first time the recipient followed the notification's link")
    clicked_channel: str | None = Field(description="where that click came from: email, push, web_push or in_app")
    deliveries: list[DeliveryOut]


class InboxItem(BaseModel):
    id: str
    type: str
    category: str
    title: str | None
    body: str | None
    data: dict[str, Any]
    collapse_key: str | None
    created_at: datetime
    read: bool


class InboxPage(BaseModel):
    items: list[InboxItem]
    next_cursor: str | None
    unread_count: int


class ReadAllResult(BaseModel):
    marked_read: int


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    fields: list[FieldError] | None = Field(None, description="400: every bad field")
    missing_scope: str | None = Field(None, description="403: the scope the API key lacks")


class ErrorResponse(BaseModel):
    error: ErrorBody
