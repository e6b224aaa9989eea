"""API schemas for recipient attributes (what daily rules read): PATCH one user, upsert users in bulk.

Attribute values are flat: strings, numbers, booleans, or lists of those;
``null`` deletes the key. Flat values make "merge" mean the same thing on
PostgreSQL (``jsonb ||``) and SQLite (``json_patch``), and are what audience
filters compare. Names are what filters can address: letters, digits, ``_``, ``-``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.json_values import AttributesPatchValue, EmailField, PhoneField, TimeZoneField
from app.schemas import LOCALE_PATTERN, ContactFields, Strict

MAX_BATCH = 10_000
Attributes = AttributesPatchValue


class AttributesPatch(Strict):
    attributes: Attributes = Field(
        description="Keys to set; null deletes a key; keys not named are kept",
        examples=[{"balance": 42.1, "low_balance_threshold": 50, "old_flag": None}],
    )


class BatchUser(ContactFields):
    user_id: str = Field(min_length=1, max_length=255)
    attributes: Attributes | None = Field(None, description="Merged into the stored attributes; null deletes a key")
    email: EmailField = Field(None, max_length=320)
    phone: PhoneField = None
    timezone: TimeZoneField = None
    locale: str | None = Field(None, pattern=LOCALE_PATTERN)


class UsersBatch(Strict):
    users: list[BatchUser] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"Up to {MAX_BATCH} users, each user_id at most once; all are written or, on any error, none",
    )


class BatchResult(BaseModel):
    received: int
    created: int
    updated: int
