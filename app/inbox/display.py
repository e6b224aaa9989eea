"""Times as the recipient reads them: relative ("5 minutes ago") and absolute, in their locale and zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_timedelta

from app.inbox.grouping import Entry

DEFAULT_LOCALE = "en"


def babel_locale(tag: str | None) -> Locale:
    """``pt-BR`` -> Locale pt_BR; anything unknown -> English rather than an error page."""
    try:
        return Locale.parse((tag or DEFAULT_LOCALE).replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse(DEFAULT_LOCALE)


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def relative_time(moment: datetime, now: datetime, locale: str | None) -> str:
    """'5 minutes ago' / 'há 5 minutos'. Clamped to the past: clock skew must not print 'in 2 seconds'."""
    delta = min(moment - now, timedelta(seconds=-1))
    return format_timedelta(delta, add_direction=True, threshold=0.9, locale=babel_locale(locale))


def absolute_time(moment: datetime, timezone: str | None, locale: str | None) -> str:
    return format_datetime(moment, format="medium", tzinfo=zone(timezone), locale=babel_locale(locale))


@dataclass(frozen=True)
class EntryView:
    """An inbox entry with its time already written for the reader."""

    entry: Entry
    relative: str
    absolute: str
    iso: str


def present(entries: list[Entry], timezone: str | None, locale: str | None, now: datetime) -> list[EntryView]:
    views = []
    for entry in entries:
        at = entry.latest.inbox_at
        views.append(
            EntryView(entry, relative_time(at, now, locale), absolute_time(at, timezone, locale), at.isoformat())
        )
    return views
