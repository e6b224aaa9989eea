"""What an API key may do: its scopes, and the scope each /v1 operation needs.

Scopes follow what a calling service does, not the URL layout: a service that
sends receipts needs ``notifications:send`` and perhaps ``users:write`` to keep
addresses current; only a privacy tool should hold ``users:erase``. The scope of
each operation is declared once, in the operations table (app/api/operations.py), so
the document states exactly what the check enforces.
"""

from __future__ import annotations

import re
from functools import lru_cache

SCOPES = {
    "notifications:send": "send notifications (POST /v1/notifications, to a user or a topic, and in bulk)",
    "notifications:read": "read a notification's delivery status and a recipient's inbox",
    "notifications:write": "mark notifications read",
    "users:read": "read recipients and their preferences",
    "users:write": "create and change recipients, preferences, devices and attributes (one or in bulk)",
    "users:erase": "erase a recipient and all their data (GDPR); irreversible",
    "topics:read": "read topics, their subscribers and a recipient's topics",
    "topics:write": "create and change topics and their subscribers",
    "workflows:read": "read workflow definitions",
    "workflows:write": "create, change and delete workflow definitions",
    "webhooks:manage": "register, change and delete outbound webhook endpoints (an admin's power: they receive events "
    "about every user)",
}
ALL_SCOPES = tuple(SCOPES)
# A new key gets every scope but erasure and webhooks unless asked: erasing people cannot be undone, and an endpoint
# hears about everyone, so those are granted by name.
GRANTED_BY_NAME = ("users:erase", "webhooks:manage")
DEFAULT_SCOPES = tuple(scope for scope in ALL_SCOPES if scope not in GRANTED_BY_NAME)


class UnknownScope(ValueError):
    pass


def parse_scopes(names: list[str] | tuple[str, ...] | str) -> tuple[str, ...]:
    """Scopes in their canonical order from a list or a space/comma-separated string; unknown names are an error."""
    if isinstance(names, str):
        names = re.split(r"[\s,]+", names.strip())
    wanted = {name.strip() for name in names if name.strip()}
    unknown = sorted(wanted - set(ALL_SCOPES))
    if unknown:
        raise UnknownScope(f"unknown scope {unknown[0]!r}; choose from {', '.join(ALL_SCOPES)}")
    if not wanted:
        raise UnknownScope("give at least one scope")
    return tuple(scope for scope in ALL_SCOPES if scope in wanted)


@lru_cache(maxsize=64)
def openapi_path(rule: str) -> str:
    """``/v1/users/<string(maxlength=255):user_id>`` → ``/v1/users/{user_id}``."""
    return re.sub(r"<(?:[^:<>]+:)?(\w+)>", r"{\1}", rule)


def missing_scope(required: str | None, granted: frozenset[str]) -> str | None:
    """The scope a request lacks, or None. An operation that declares none is refused: keys fail closed."""
    if required is None:
        return "(undeclared)"
    return None if required in granted else required
