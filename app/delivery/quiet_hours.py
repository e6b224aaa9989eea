"""Quiet hours in the recipient's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str | None) -> ZoneInfo:
    """The recipient's zone; unknown or missing zones fall back to UTC (the conservative policy)."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def is_quiet(local: time, start: time | None, end: time | None) -> bool:
    """Whether a local wall-clock time falls in [start, end); windows may span midnight."""
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_until(now: datetime, tz_name: str | None, start: time | None, end: time | None) -> datetime | None:
    """When the current quiet window ends (UTC), or None if it is not quiet now.

    The end is computed on the local calendar, so a window ending at 07:00
    ends at 07:00 local time even across a DST change.
    """
    local_now = now.astimezone(zone(tz_name))
    if not is_quiet(local_now.time().replace(tzinfo=None), start, end):
        return None
    end_date = local_now.date()
    if local_now.time().replace(tzinfo=None) >= end:
        end_date += timedelta(days=1)
    local_end = datetime.combine(end_date, end, tzinfo=local_now.tzinfo)
    return local_end.astimezone(UTC)
