"""When a digest step's window closes for one recipient, given the digest frequency they chose (pure).

The recipient chooses per category on the preferences page (or ``PUT /v1/users/{id}/preferences``, ``digests``):

- no choice (``default``): the workflow's own window;
- ``off``: the digest does not hold their triggers -- each continues at once, as a digest of one;
- ``hourly``: the window lasts at least an hour (or the workflow's own window, if longer);
- ``daily``: the window lasts until the next 09:00 in the recipient's time zone (UTC without one), or the
  workflow's own window, if that ends later.

A digest's category is that of what it leads to: the template of the first channel or escalation step after it.
Security notices ignore the choice, as routing ignores category opt-outs for them. The workflow's ``max_events``
still closes a digest early: it bounds what one digest carries.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from app.campaigns.planning import local_wave_time

DEFAULT, OFF, HOURLY, DAILY = "default", "off", "hourly", "daily"
FREQUENCIES = (OFF, HOURLY, DAILY)
DAILY_AT = time(9, 0)
HOUR = timedelta(hours=1)


def closes_at(
    frequency: str | None, security: bool, zone_name: str | None, window_seconds: int, now: datetime
) -> datetime | None:
    """When a digest opened ``now`` closes for this recipient; None when it should not hold them at all (``off``)."""
    own = now + timedelta(seconds=window_seconds)
    if security or frequency not in FREQUENCIES:
        return own
    if frequency == OFF:
        return None
    if frequency == HOURLY:
        return max(own, now + HOUR)
    return max(own, local_wave_time(DAILY_AT, zone_name, now))
