"""The value types of request bodies, each stating its rule in the OpenAPI document as well as enforcing it.

Attribute values are flat -- strings, numbers, booleans, or lists of those -- so that "merge" means
the same on PostgreSQL (``jsonb ||``) and SQLite (``json_patch``) and audience filters can compare
them. Contact fields take their value, an empty string (which clears them) or null.
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import BeforeValidator, Field, StringConstraints, WithJsonSchema

E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
TIME_ZONES = frozenset(available_timezones())


def _optional_text(schema: dict, description: str) -> WithJsonSchema:
    """The schema of an optional contact field: the value, an empty string (clears it) or null."""
    return WithJsonSchema(
        {"anyOf": [schema, {"type": "string", "maxLength": 0}, {"type": "null"}], "description": description}
    )


EmailField = Annotated[
    str | None,
    _optional_text(
        {"type": "string", "format": "email", "maxLength": 320},
        "An address email-validator accepts (syntax only, no DNS); stored lower-cased. An empty string clears it.",
    ),
]
PhoneField = Annotated[
    str | None,
    _optional_text(
        {"type": "string", "format": "e164", "maxLength": 16},
        "E.164 (+ and 7 to 15 digits, e.g. +14155551234) and a number libphonenumber calls valid. "
        "An empty string clears it.",
    ),
]
TimeZoneField = Annotated[
    str | None,
    _optional_text(
        {"type": "string", "format": "iana-time-zone", "maxLength": 64},
        "An IANA time zone name from the tz database (Python's zoneinfo.available_timezones()), e.g. Europe/Lisbon. "
        "An empty string clears it.",
    ),
]

AttributeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]


def _fraction_or_exponent(value: Any) -> Any:
    """The float branch of a number takes only JSON numbers written as floats: an integer beyond ±2**53 is refused,
    not rounded into range."""
    if isinstance(value, int):
        raise ValueError("integers must lie within ±2**53")
    return value


# Numbers beyond 2**53 would not survive a round trip through JSON and SQLite/PostgreSQL JSON alike: refused.
Number = (
    Annotated[int, Field(ge=-(2**53), le=2**53)]
    | Annotated[float, Field(ge=-(2**53), le=2**53, allow_inf_nan=False), BeforeValidator(_fraction_or_exponent)]
)
Scalar = bool | Number | Annotated[str, StringConstraints(max_length=2000)]
AttributeValue = Scalar | Annotated[list[Scalar], Field(max_length=100)]
NO_OTHER_NAMES = {"additionalProperties": False}
StoredAttributes = Annotated[
    dict[AttributeName, AttributeValue], Field(max_length=200, json_schema_extra=NO_OTHER_NAMES)
]
# In a merge, null deletes the key.
AttributesPatchValue = Annotated[
    dict[AttributeName, AttributeValue | None], Field(max_length=200, json_schema_extra=NO_OTHER_NAMES)
]
