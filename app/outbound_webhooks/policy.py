"""When a failed message is tried again, and when an endpoint that keeps failing is switched off (no I/O)."""

from __future__ import annotations

from datetime import datetime, timedelta

EXCERPT_CHARS = 500


def retry_delay(attempts: int, schedule: tuple[float, ...]) -> float | None:
    """Seconds to wait after the ``attempts``-th failed attempt, or None once the schedule is spent (give up)."""
    if attempts < 1 or attempts > len(schedule):
        return None
    return schedule[attempts - 1]


def should_disable(
    failing_since: datetime | None, consecutive_failures: int, now: datetime, after_hours: float, min_failures: int
) -> bool:
    """Every attempt has failed for ``after_hours`` and at least ``min_failures`` times in a row."""
    if failing_since is None or consecutive_failures < min_failures:
        return False
    return now - failing_since >= timedelta(hours=after_hours)


def succeeded(status_code: int | None) -> bool:
    """A 2xx answer is success; anything else (3xx included: redirects are not followed) is a failure."""
    return status_code is not None and 200 <= status_code < 300


def excerpt(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"
