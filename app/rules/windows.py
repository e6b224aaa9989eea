"""Time-zone and send-window arithmetic for daily rules. Pure: every function takes ``now``.

The scheduler never runs one global cron. Each evaluation asks, for every
IANA zone present among recipients, "is it inside the send window there right
now, and which local date is it?" (:func:`plan`). Zones that agree on the
date are evaluated together by one SQL query. At send time the recipient's
*current* zone is checked again (:func:`recheck`), so a time-zone change
between evaluation and sending cannot wake anyone.

Recipients without a usable time zone follow the rule's policy:
``utc`` (conservative, the default) uses the window in UTC; ``country`` uses
``attributes.country`` (ISO 3166 alpha-2) and the zones tzdata lists for it,
sending only when *every* zone of that country is inside the window on the
same local date; a missing or unknown country falls back to UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC_POLICY = "utc"
COUNTRY_POLICY = "country"
POLICIES = (UTC_POLICY, COUNTRY_POLICY)
DEFAULT_WINDOW = (time(9, 0), time(19, 0))
# "Every N days" periods count from this date, so a period is the same for every evaluation.
PERIOD_EPOCH = date(2000, 1, 1)

SEND = "send"
WAIT = "wait"
EXPIRE = "expire"


@lru_cache(maxsize=1024)
def zone(name: str | None) -> ZoneInfo | None:
    """The zone, or None for a missing or unknown name (treated as "no time zone")."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=1)
def country_zones() -> dict[str, tuple[str, ...]]:
    """ISO country code -> its IANA zones, from tzdata's zone.tab (what pytz.country_timezones reads)."""
    table: dict[str, list[str]] = {}
    text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) >= 3 and zone(parts[2]) is not None:
            table.setdefault(parts[0].upper(), []).append(parts[2])
    return {code: tuple(zones) for code, zones in table.items()}


def inside(moment: time, start: time, end: time) -> bool:
    """``start <= moment < end`` (windows do not cross midnight; the form refuses that)."""
    return start <= moment < end


def period_start(local_date: date, every_days: int) -> date:
    """The first day of the "every N days" period holding ``local_date``; the date itself when N is 1."""
    if every_days <= 1:
        return local_date
    return local_date - timedelta(days=(local_date - PERIOD_EPOCH).days % every_days)


def local(now: datetime, name: str) -> datetime:
    return now.astimezone(ZoneInfo(name))


@dataclass
class Target:
    """Recipients to evaluate together: all have the same local period right now and are inside the window."""

    period: date
    local_date: date
    zones: list[str] = field(default_factory=list)
    # Recipients without a usable zone whose country (country policy) is one of these.
    countries: list[str] = field(default_factory=list)
    # Recipients without a usable zone (and, under the country policy, without a known country): UTC window.
    utc_fallback: bool = False


@dataclass(frozen=True)
class Plan:
    targets: list[Target]
    # Zone names found among recipients that are not IANA zones: those recipients count as "no time zone".
    unknown_zones: tuple[str, ...]


def plan(
    now: datetime,
    present_zones: Iterable[str | None],
    start: time,
    end: time,
    every_days: int = 1,
    policy: str = UTC_POLICY,
) -> Plan:
    """Which recipients are inside the send window at ``now``, grouped by local date (one SQL query each)."""
    by_date: dict[date, Target] = {}

    def target(local_date: date) -> Target:
        if local_date not in by_date:
            by_date[local_date] = Target(period_start(local_date, every_days), local_date)
        return by_date[local_date]

    unknown = []
    for name in sorted({z for z in present_zones if z is not None}):
        if zone(name) is None:
            unknown.append(name)
            continue
        moment = local(now, name)
        if inside(moment.time(), start, end):
            target(moment.date()).zones.append(name)
    utc_now = local(now, "UTC")
    if inside(utc_now.time(), start, end):
        target(utc_now.date()).utc_fallback = True
    if policy == COUNTRY_POLICY:
        for code, zones in sorted(country_zones().items()):
            moments = [local(now, name) for name in zones]
            dates = {m.date() for m in moments}
            if len(dates) == 1 and all(inside(m.time(), start, end) for m in moments):
                target(dates.pop()).countries.append(code)
    return Plan(sorted(by_date.values(), key=lambda t: t.local_date), tuple(unknown))


def zones_for(timezone: str | None, country: str | None, policy: str) -> tuple[str, ...]:
    """The zone(s) a recipient is judged by: their own, else their country's (country policy), else UTC."""
    if zone(timezone) is not None:
        return (timezone,)
    if policy == COUNTRY_POLICY and isinstance(country, str):
        zones = country_zones().get(country.upper())
        if zones:
            return zones
    return ("UTC",)


def zone_label(timezone: str | None, country: str | None, policy: str) -> str:
    """How the sent log names the zone a recipient was judged by."""
    if zone(timezone) is not None:
        return timezone
    zones = zones_for(None, country, policy)
    return f"country:{country.upper()}" if zones != ("UTC",) else "UTC"


def recheck(
    now: datetime,
    claimed_period: date,
    timezone: str | None,
    country: str | None,
    start: time,
    end: time,
    every_days: int = 1,
    policy: str = UTC_POLICY,
) -> str:
    """At send time, with the recipient's *current* zone: SEND, WAIT (window opens later) or EXPIRE.

    WAIT leaves the claim for a later evaluation inside the window; EXPIRE means
    the claimed period is over for this recipient, so the alert is dropped
    rather than sent late (tomorrow's evaluation re-reads the balance).
    """
    verdicts = []
    for name in zones_for(timezone, country, policy):
        moment = local(now, name)
        current = period_start(moment.date(), every_days)
        last_day_of_period = period_start(moment.date() + timedelta(days=1), every_days) != current
        if current > claimed_period or (current == claimed_period and last_day_of_period and moment.time() >= end):
            verdicts.append(EXPIRE)
        elif current == claimed_period and inside(moment.time(), start, end):
            verdicts.append(SEND)
        else:
            verdicts.append(WAIT)
    if EXPIRE in verdicts:
        return EXPIRE
    return SEND if all(v == SEND for v in verdicts) else WAIT


def idempotency_key(rule_id: int, recipient_id: int, period: date) -> str:
    """The one key per (rule, recipient, local period): names the notification and, through it, the provider send."""
    return f"rule:{rule_id}:{recipient_id}:{period.isoformat()}"
