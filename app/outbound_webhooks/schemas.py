"""/v1/webhook-endpoints request and response schemas (they also generate the OpenAPI entries)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, WithJsonSchema, field_validator

from app.outbound_webhooks.events import ALL_EVENT_TYPES, EVENT_TYPES
from app.schemas import Strict

EventType = Literal[ALL_EVENT_TYPES]
URL_DESCRIPTION = (
    "Where Herald POSTs the events: an absolute https:// URL on a public host (not localhost, *.local, "
    "*.internal, *.lan, *.home.arpa, a bare name, or a private, loopback or link-local address) -- the "
    "web-push rules. Hosts listed in the server's HERALD_WEBHOOK_ALLOWED_HOSTS are exempt (tests, demos)."
)
EndpointUrl = Annotated[
    str,
    WithJsonSchema({"type": "string", "format": "public-https-url", "maxLength": 2048, "description": URL_DESCRIPTION}),
]
EVENT_TYPES_DESCRIPTION = "Each at most once; one or more of: " + "; ".join(
    f"`{k}`: {v}" for k, v in EVENT_TYPES.items()
)
EventTypes = Annotated[
    list[EventType],
    WithJsonSchema(
        {
            "type": "array",
            "items": {"enum": list(ALL_EVENT_TYPES), "type": "string"},
            "minItems": 1,
            "maxItems": len(ALL_EVENT_TYPES),
            "uniqueItems": True,
            "description": EVENT_TYPES_DESCRIPTION,
        }
    ),
]


def _once_each(value: list[str] | None) -> list[str] | None:
    if value is not None and len(set(value)) != len(value):
        raise ValueError("name each event type once")
    return value


class WebhookEndpointCreate(Strict):
    url: EndpointUrl = Field(max_length=2048)
    event_types: EventTypes = Field(min_length=1, max_length=len(ALL_EVENT_TYPES))
    description: str = Field("", max_length=255)

    _unique = field_validator("event_types")(_once_each)


class WebhookEndpointUpdate(Strict):
    """Only the fields given change; ``enabled: true`` on a disabled endpoint resumes sending its kept messages."""

    url: EndpointUrl | None = Field(None, max_length=2048)
    event_types: EventTypes | None = Field(None, min_length=1, max_length=len(ALL_EVENT_TYPES))
    description: str | None = Field(None, max_length=255)
    enabled: bool | None = None

    _unique = field_validator("event_types")(_once_each)


class WebhookEndpointOut(BaseModel):
    id: int
    url: str
    description: str
    event_types: list[EventType]
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: str = Field(description="`whsec_` + base64: verify signatures with it. Shown only here and on rotation.")


class WebhookEndpointList(BaseModel):
    items: list[WebhookEndpointOut]


class WebhookSecret(BaseModel):
    secret: str = Field(description="The new `whsec_…` secret; the previous one also signs for 24 h.")
