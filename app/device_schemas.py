"""Request and response schemas of /v1/users/{user_id}/devices: mobile tokens and web-push subscriptions.

The conventions are app/schemas.py's (strict, no unknown fields, every rule also in the document).
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Annotated, Literal

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from app.schemas import Strict, _no

Platform = Literal["ios", "android", "web"]


def _b64url_bytes(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value.rstrip("=")) % 4))


# Canonical base64url of exactly 16 bytes, and of a 65-byte uncompressed point (first byte 0x04).
AUTH_SECRET_PATTERN = r"^[A-Za-z0-9_-]{21}[AQgw]={0,2}$"
P256_POINT_PATTERN = r"^B[A-P][A-Za-z0-9_-]{84}[AEIMQUYcgkosw048]=?$"
APNS_TOKEN_PATTERN = r"^[0-9a-fA-F]{64,200}$"
FCM_TOKEN_PATTERN = r"^[A-Za-z0-9_:-]{32,4096}$"


class WebPushKeys(Strict):
    p256dh: Annotated[
        str,
        WithJsonSchema(
            {
                "type": "string",
                "format": "p256-public-key",
                "minLength": 87,
                "maxLength": 88,
                "description": f"The subscription's P-256 public key: 65 bytes, uncompressed, base64url ({P256_POINT_PATTERN}), "
                "and a point on the curve",
            }
        ),
    ] = Field(pattern=P256_POINT_PATTERN)
    auth: str = Field(pattern=AUTH_SECRET_PATTERN, description="16-byte authentication secret, base64url")

    @field_validator("p256dh")
    @classmethod
    def _p256_point(cls, value: str) -> str:
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _b64url_bytes(value.rstrip("=")))
        except ValueError:
            raise ValueError("is not a point on the P-256 curve") from None
        return value


class WebPushSubscription(Strict):
    endpoint: Annotated[
        str,
        WithJsonSchema(
            {
                "type": "string",
                "format": "public-https-url",
                "maxLength": 2048,
                "description": "The push service's absolute https:// URL; its host must be a public DNS name (not localhost, "
                "*.local, *.internal, *.lan, *.home.arpa, a bare name) or a public address",
            }
        ),
    ] = Field(max_length=2048)
    keys: WebPushKeys


DEVICE_RULES = {
    "oneOf": [
        {
            "properties": {"platform": {"const": "web"}},
            "required": ["subscription"],
            "allOf": [{"properties": {"subscription": {"type": "object"}}}, _no("token")],
        },
        {
            "properties": {"platform": {"const": "ios"}, "token": {"type": "string", "pattern": APNS_TOKEN_PATTERN}},
            "required": ["token"],
            "allOf": [_no("subscription")],
        },
        {
            "properties": {"platform": {"const": "android"}, "token": {"type": "string", "pattern": FCM_TOKEN_PATTERN}},
            "required": ["token"],
            "allOf": [_no("subscription")],
        },
    ]
}


class DeviceCreate(Strict):
    """web takes ``subscription``; ios takes a hex APNs token; android an FCM token (the schema's ``oneOf``)."""

    model_config = ConfigDict(json_schema_extra=DEVICE_RULES)

    platform: Platform
    token: str | None = Field(
        None,
        description="APNs (ios: 64+ hex characters) or FCM (android: 32+ of "
        "[A-Za-z0-9_:-]) registration token; not for web",
    )
    subscription: WebPushSubscription | None = Field(None, description="PushSubscription.toJSON() (web only)")

    @model_validator(mode="after")
    def _token_matches_platform(self) -> DeviceCreate:
        if self.platform == "web":
            if self.subscription is None:
                raise ValueError("subscription is required for platform web")
            if self.token is not None:
                raise ValueError("token is only for ios/android; web uses subscription")
        else:
            if self.token is None:
                raise ValueError(f"token is required for platform {self.platform}")
            if self.subscription is not None:
                raise ValueError("subscription is only for platform web")
            if self.platform == "ios" and not re.fullmatch(APNS_TOKEN_PATTERN, self.token):
                raise ValueError("token: an APNs device token is 64+ hexadecimal characters")
            if self.platform == "android" and not re.fullmatch(FCM_TOKEN_PATTERN, self.token):
                raise ValueError("token: an FCM registration token is 32+ characters of [A-Za-z0-9_:-]")
        return self


class Device(BaseModel):
    id: int
    platform: Platform
    active: bool
    created_at: datetime
