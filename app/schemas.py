"""Request and response schemas of the /v1 API.

These pydantic models validate every request *and* generate the OpenAPI
document (app/api/openapi.py), so the docs cannot drift from what the API
accepts. Unknown fields are rejected: a typo in a field name is an error,
not a silently ignored setting.
"""
from __future__ import annotations

import base64
import re
from datetime import datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from cryptography.hazmat.primitives.asymmetric import ec
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.delivery.rendering import FIELD_LIMITS

Channel = Literal["in_app", "email", "sms", "push", "web_push"]
NotificationType = Literal["marketing", "transactional", "security"]
Priority = Literal["low", "normal", "high", "critical"]
Platform = Literal["ios", "android", "web"]

CATEGORY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
LOCALE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


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
    if not re.fullmatch(r"\+[1-9]\d{6,14}", value):
        raise ValueError("must be in E.164 format, e.g. +14155551234")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_timezone(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}, e.g. Europe/Lisbon") from None
    return value


class QuietHours(Strict):
    start: str = Field(description="Local time HH:MM when the quiet window starts", examples=["22:00"])
    end: str = Field(description="Local time HH:MM when it ends (may be the next day)", examples=["07:00"])

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM.match(value):
            raise ValueError("must be a 24-hour time HH:MM")
        return value

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
    email: str | None = Field(None, max_length=320, examples=["ana@example.com"])
    phone: str | None = Field(None, description="E.164", examples=["+14155551234"])
    timezone: str | None = Field(None, description="IANA time zone", examples=["Asia/Singapore"])
    locale: str | None = Field(None, pattern=LOCALE_PATTERN, examples=["pt-BR"])
    attributes: dict[str, Any] | None = Field(None, description="Free-form attributes, replaced as a whole")
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
    enabled: bool


class PreferencesUpdate(Strict):
    preferences: list[PreferenceItem] = Field(default_factory=list, max_length=500)
    quiet_hours: QuietHours | None = None
    clear_quiet_hours: bool = False
    hard_stop: bool | None = Field(None, description="Global stop: nothing is sent while true")


class Preferences(BaseModel):
    preferences: list[PreferenceItem]
    quiet_hours: QuietHours | None
    hard_stop: bool


def _b64url_bytes(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value.rstrip("=")) % 4))


class WebPushKeys(Strict):
    p256dh: str = Field(pattern=r"^[A-Za-z0-9_-]{80,100}={0,2}$", description="The subscription's P-256 public key")
    auth: str = Field(pattern=r"^[A-Za-z0-9_-]{16,24}={0,2}$", description="16-byte authentication secret")

    @field_validator("p256dh")
    @classmethod
    def _p256_point(cls, value: str) -> str:
        raw = _b64url_bytes(value.rstrip("="))
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError("must be an uncompressed P-256 point (65 bytes, base64url)")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError:
            raise ValueError("is not a point on the P-256 curve") from None
        return value

    @field_validator("auth")
    @classmethod
    def _sixteen_bytes(cls, value: str) -> str:
        if len(_b64url_bytes(value.rstrip("="))) != 16:
            raise ValueError("must be 16 bytes, base64url")
        return value


class WebPushSubscription(Strict):
    endpoint: str = Field(max_length=2048)
    keys: WebPushKeys


class DeviceCreate(Strict):
    platform: Platform
    token: str | None = Field(None, description="APNs or FCM registration token (ios/android)")
    subscription: WebPushSubscription | None = Field(None, description="PushSubscription.toJSON() (web)")

    @model_validator(mode="after")
    def _token_matches_platform(self) -> DeviceCreate:
        if self.platform == "web":
            if self.subscription is None:
                raise ValueError("subscription is required for platform web")
            if self.token is not None:
                raise ValueError("token is only for ios/android; web uses subscription")
        else:
            if not self.token:
                raise ValueError(f"token is required for platform {self.platform}")
            if self.subscription is not None:
                raise ValueError("subscription is only for platform web")
            if self.platform == "ios" and not re.fullmatch(r"[0-9a-fA-F]{64,200}", self.token):
                raise ValueError("token: an APNs device token is 64+ hexadecimal characters")
            if self.platform == "android" and not re.fullmatch(r"[A-Za-z0-9_:\-]{32,4096}", self.token):
                raise ValueError("token: an FCM registration token is 32+ characters of [A-Za-z0-9_:-]")
        return self


class Device(BaseModel):
    id: int
    platform: Platform
    active: bool
    created_at: datetime


class NotificationCreate(Strict):
    user_id: str = Field(min_length=1, max_length=255)
    type: NotificationType
    category: str = Field("general", pattern=CATEGORY_PATTERN)
    template: str | None = Field(None, max_length=128, description="Template key")
    title: str | None = Field(None, max_length=500)
    body: str | None = Field(None, max_length=10_000)
    data: dict[str, Any] = Field(default_factory=dict, description="Payload for deep links, available to templates")
    channels: list[Channel] = Field(min_length=1, max_length=5)
    priority: Priority = "normal"
    idempotency_key: str | None = Field(None, min_length=1, max_length=255, description="Or the Idempotency-Key header")
    send_at: datetime | None = Field(None, description="RFC 3339 with offset; later delivery")
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
                limit = FIELD_LIMITS.get((channel, "text" if channel == "sms" else limit_field))
                if text and limit and len(text) > limit:
                    raise PydanticCustomError(
                        "too_long_for_channel", "{field} has {length} characters; {channel} accepts at most {limit}",
                        {"field": field, "length": len(text), "channel": channel, "limit": limit})
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

