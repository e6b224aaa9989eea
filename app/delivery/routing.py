"""Which channels a notification goes out on, now, later, or not at all -- and why.

``route`` is the whole routing policy as one pure function: callers load the
facts (preferences, suppression, reachability, recent marketing count) and
act on the decisions. Every "no" carries a reason that ends up on a
SUPPRESSED delivery, so staff can always answer "why didn't they get it?".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import NamedTuple

from app.channels import interrupting_channels, needs_marketing_opt_in, reachable
from app.delivery.constants import ALL_CATEGORIES
from app.delivery.quiet_hours import quiet_until

SEND = "send"
DEFER = "defer"
SUPPRESS = "suppress"

# Opting out of this category opts out of all marketing, whatever its own category.
MARKETING_CATEGORY = "marketing"
# Channels that interrupt a person and so wait out their quiet hours (declared on the adapters).
INTERRUPTING_CHANNELS = interrupting_channels()


@dataclass(frozen=True)
class RecipientFacts:
    hard_stop: bool = False
    timezone: str | None = None
    quiet_start: time | None = None
    quiet_end: time | None = None
    # (channel, category) -> enabled; category "*" is the channel's own switch.
    preferences: dict[tuple[str, str], bool] = field(default_factory=dict)
    # Channels the recipient can be reached on at all (an address, an active device).
    reachable: frozenset[str] = frozenset()
    # Channels whose address is on a suppression list (bounced, complained, STOP).
    suppressed: frozenset[str] = frozenset()
    marketing_sent_last_hour: int = 0


@dataclass(frozen=True)
class NotificationFacts:
    type: str
    category: str
    priority: str
    channels: tuple[str, ...]


class Decision(NamedTuple):
    channel: str
    action: str
    reason: str | None = None
    not_before: datetime | None = None


def reachable_channels(email: str | None, phone: str | None, platforms: set[str] | frozenset[str]) -> frozenset[str]:
    """Channels a recipient can be reached on at all: an address, or an active device of the right kind.

    The channel registry decides which address column or device platform serves which channel.
    """
    return reachable({"email": email, "phone": phone}, platforms)


def switch_default(channel: str, category: str) -> bool:
    """Whether a (channel, category) switch nobody has set counts as on: marketing on an opt-in channel starts off."""
    return not (category == MARKETING_CATEGORY and needs_marketing_opt_in(channel))


def opt_out_reason(channel: str, note: NotificationFacts, prefs: dict[tuple[str, str], bool]) -> str | None:
    """The preference that forbids this channel for this notification, if any.

    A channel switched off stops everything, security included. Security
    ignores category opt-outs. Transactional honours an opt-out of its own
    category but not the blanket marketing opt-out. Marketing honours both,
    and on a channel that says so (SMS) needs an explicit opt-in.
    """
    if prefs.get((channel, ALL_CATEGORIES)) is False:
        return "channel_disabled"
    if note.type == "security":
        return None
    if prefs.get((channel, note.category)) is False:
        return "opted_out"
    if note.type == "marketing":
        if prefs.get((channel, MARKETING_CATEGORY)) is False:
            return "opted_out"
        opted_in = prefs.get((channel, MARKETING_CATEGORY)) or prefs.get((channel, note.category))
        if needs_marketing_opt_in(channel) and not opted_in:
            return "no_marketing_sms_opt_in"
    return None


def route(note: NotificationFacts, facts: RecipientFacts, now: datetime, marketing_cap_per_hour: int) -> list[Decision]:
    """Decide every requested channel: send now, defer past quiet hours, or suppress with a reason."""
    bypasses_quiet = note.priority == "critical" or note.type == "security"
    capped = (
        note.type == "marketing"
        and marketing_cap_per_hour > 0
        and facts.marketing_sent_last_hour >= marketing_cap_per_hour
    )
    quiet_end = quiet_until(now, facts.timezone, facts.quiet_start, facts.quiet_end)
    decisions = []
    for channel in note.channels:
        reason = None
        if facts.hard_stop:
            reason = "hard_stop"
        elif channel in facts.suppressed:
            reason = "suppressed_address"
        elif channel not in facts.reachable:
            reason = "unreachable"
        else:
            reason = opt_out_reason(channel, note, facts.preferences) or ("frequency_cap" if capped else None)
        if reason:
            decisions.append(Decision(channel, SUPPRESS, reason))
        elif quiet_end and channel in INTERRUPTING_CHANNELS and not bypasses_quiet:
            decisions.append(Decision(channel, DEFER, "quiet_hours", quiet_end))
        else:
            decisions.append(Decision(channel, SEND))
    return decisions
