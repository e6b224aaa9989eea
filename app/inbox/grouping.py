"""How a page of notifications becomes inbox entries: pure functions, no database, no Flask.

Notifications sharing a ``collapse_key`` show as one entry ("Ana and 4 others
liked your photo"); everything else is one entry per notification. Grouping
works on the page being shown, so a group that straddles a "load more"
boundary shows once per page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

# Tabs, newlines and other controls are stripped by browsers inside URLs,
# which is how "java\tscript:" slips past naive checks: refuse them outright.
_UNSAFE_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")


class InboxItem(Protocol):
    id: str
    title: str | None
    body: str | None
    data: dict | None
    collapse_key: str | None
    read_at: Any


@dataclass(frozen=True)
class Entry:
    """One line of the inbox: a single notification or a collapsed group, newest member first."""

    key: str
    items: tuple[InboxItem, ...]

    @property
    def latest(self) -> InboxItem:
        return self.items[0]

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    @property
    def unread(self) -> bool:
        return any(item.read_at is None for item in self.items)

    @property
    def unread_ids(self) -> list[str]:
        return [item.id for item in self.items if item.read_at is None]

    @property
    def headline(self) -> str:
        return headline(self.items)

    @property
    def link(self) -> str | None:
        return safe_link(self.latest.data)


def group_entries(items: Sequence[InboxItem]) -> list[Entry]:
    """Collapse items with the same ``collapse_key``; an entry sits where its newest member is.

    ``items`` must be newest first (as the inbox query returns them).
    """
    order: list[str] = []
    members: dict[str, list[InboxItem]] = {}
    for item in items:
        key = f"collapse:{item.collapse_key}" if item.collapse_key else f"id:{item.id}"
        if key not in members:
            order.append(key)
            members[key] = []
        members[key].append(item)
    return [Entry(key, tuple(members[key])) for key in order]


def _actors(items: Sequence[InboxItem]) -> list[str]:
    names: list[str] = []
    for item in items:
        actor = (item.data or {}).get("actor")
        if isinstance(actor, str) and actor.strip() and actor.strip() not in names:
            names.append(actor.strip())
    return names


def headline(items: Sequence[InboxItem]) -> str:
    """The entry's title: the notification's own for one item, a summary for a group.

    With ``data.actor`` on the members: "Ana", "Ana and Bo", "Ana and 4 others",
    followed by ``data.action`` of the newest ("liked your photo") when given.
    Without actors: "5 notifications".
    """
    newest = items[0]
    if len(items) == 1:
        return newest.title or newest.body or "Notification"
    actors = _actors(items)
    if not actors:
        return f"{len(items)} notifications"
    if len(actors) == 1:
        who = actors[0]
    elif len(actors) == 2:
        who = f"{actors[0]} and {actors[1]}"
    else:
        others = len(actors) - 1
        who = f"{actors[0]} and {others} others"
    action = (newest.data or {}).get("action")
    return f"{who} {action.strip()}" if isinstance(action, str) and action.strip() else who


def safe_link(data: dict | None) -> str | None:
    """``data.url`` or ``data.deep_link`` when it is an http(s) URL or a relative one; never ``javascript:`` & co."""
    if not data:
        return None
    for name in ("url", "deep_link"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return value if is_safe_link(value) else None
    return None


def is_safe_link(value: str) -> bool:
    if len(value) > 2048 or _UNSAFE_CHARACTERS.search(value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if parts.scheme:
        return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
    # No scheme: a path on this site. "//host" would leave it, and a colon
    # before the first slash is how some browsers read a scheme anyway.
    return not parts.netloc and not value.startswith("//") and ":" not in value.split("/", 1)[0]
