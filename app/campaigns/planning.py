"""Campaign decisions as pure functions: when each wave goes, how batches are spaced, whether it may launch.

Nothing here reads the database, Redis or the clock; callers pass ``now``.

Local-time schedules ("09:00 in each recipient's zone") send one wave per
time zone at the next 09:00 *on that zone's calendar* at or after launch. A
zone where 09:00 has already passed today is sent tomorrow at 09:00, never
late today: a marketing message at 23:00 is worse than one a day later.
Recipients without a zone (or with one zoneinfo does not know) follow UTC.
Wall-clock times that do not exist on a DST day (02:30 when clocks jump
02:00 -> 03:00) go out after the jump, shifted by the gap (03:30); times
that happen twice (clocks going back) use the first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from app.channels import channel_names, variant_sources
from app.delivery.quiet_hours import zone
from app.delivery.rendering import pick_variant

BATCH_SIZE = 1000


def local_wave_time(local_time: time, zone_name: str | None, now: datetime) -> datetime:
    """The UTC instant of the next ``local_time`` in ``zone_name`` at or after ``now``."""
    tz = zone(zone_name)
    local_now = now.astimezone(tz)
    for days in (0, 1, 2):
        day = local_now.date() + timedelta(days=days)
        candidate = datetime.combine(day, local_time, tzinfo=tz)  # fold=0: gap -> shifted by it, overlap -> first
        # Round-tripping through UTC normalises a non-existent wall time to the instant after the gap.
        instant = candidate.astimezone(UTC)
        if instant >= now:
            return instant
    raise AssertionError("unreachable: a local time recurs within two days")


@dataclass(frozen=True)
class Wave:
    """Recipients whose send instant is the same: one or more time zones (None = no zone)."""

    at: datetime
    zones: tuple[str | None, ...]


def plan_waves(zones: list[str | None], local_time: time, now: datetime) -> list[Wave]:
    """Group zones by the instant their local time comes round, earliest first."""
    by_instant: dict[datetime, list[str | None]] = {}
    for name in zones:
        by_instant.setdefault(local_wave_time(local_time, name, now), []).append(name)
    return [
        Wave(at, tuple(sorted(names, key=lambda n: (n is not None, n or ""))))
        for at, names in sorted(by_instant.items())
    ]


def batch_size(per_minute: int | None) -> int:
    """Recipients per batch job: 1000, or the per-minute limit when it is smaller (a batch is sent at once)."""
    if per_minute:
        return max(1, min(BATCH_SIZE, per_minute))
    return BATCH_SIZE


def spaced_run_times(starts: list[datetime], sizes: list[int], per_minute: int | None) -> list[datetime]:
    """When each batch may run, batches given in send order with their earliest start.

    Unthrottled: each batch runs at its start. Throttled at N recipients per
    minute: a batch of B waits until the previous batch's time plus the time
    B sends "cost" at N per minute, so no 60-second window starts more than N
    sends -- across waves too, when two waves overlap.
    """
    if not per_minute:
        return list(starts)
    times: list[datetime] = []
    previous: tuple[datetime, int] | None = None
    for start, size in zip(starts, sizes, strict=True):
        at = start
        if previous is not None:
            at = max(at, previous[0] + timedelta(seconds=60 * previous[1] / per_minute))
        times.append(at)
        previous = (at, size)
    return times


def split_sizes(total: int, size: int) -> list[int]:
    """``total`` recipients cut into batches of at most ``size`` (for estimates and tests)."""
    return [min(size, total - start) for start in range(0, total, size)] if total > 0 else []


def template_channels(variants: dict) -> set[str]:
    """Every channel some locale of a template version can render: with its own variant or its fallback's
    (web push renders the mobile push variant, see pick_variant)."""
    found = {channel for fields in variants.values() if isinstance(fields, dict) for channel in fields}
    return {channel for channel in channel_names() if found & set(variant_sources(channel))}


def missing_variants(variants: dict, channels: list[str], default_locale: str) -> list[str]:
    """Channels the template cannot render for a recipient of its default locale."""
    return [c for c in channels if pick_variant(variants, c, default_locale, default_locale) is None]


def launch_problems(
    *,
    audience_count: int,
    variants: dict | None,
    default_locale: str,
    channels: list[str],
    schedule: str,
    send_at: datetime | None,
    local_time: time | None,
    ends_at: datetime | None,
    now: datetime,
) -> list[str]:
    """Every reason this campaign cannot launch now, in words for the page; empty when it can."""
    problems = []
    if audience_count <= 0:
        problems.append("The audience is empty: no recipient matches its filter.")
    if not channels:
        problems.append("Choose at least one channel.")
    if variants is None:
        problems.append("The template has no saved version.")
    else:
        for channel in missing_variants(variants, channels, default_locale):
            problems.append(f"The template has no {channel} variant in its default locale ({default_locale}).")
    if schedule == "at" and send_at is None:
        problems.append("Choose the UTC time to send at.")
    if schedule == "local" and local_time is None:
        problems.append("Choose the local time to send at.")
    if ends_at is not None:
        if ends_at <= now:
            problems.append("The end time is in the past.")
        elif schedule == "at" and send_at is not None and send_at >= ends_at:
            problems.append("The campaign would end before it starts: the end time is before the send time.")
    return problems


def first_send_time(schedule: str, send_at: datetime | None, now: datetime) -> datetime:
    """When a non-local campaign's first batch goes: now, or the chosen UTC time if it is later."""
    if schedule == "at" and send_at is not None and send_at > now:
        return send_at
    return now


@dataclass(frozen=True)
class Progress:
    """The numbers on a campaign's page, from its counters."""

    planned: int
    sent: int
    suppressed: int
    failed: int
    read: int
    clicked: int
    suppressed_reasons: dict[str, int]
    sent_by_channel: dict[str, int]

    @property
    def handled(self) -> int:
        """Recipient-channel pairs with an outcome (sent, suppressed or failed)."""
        return self.sent + self.suppressed + self.failed

    def percent(self, channels: int) -> int:
        expected = self.planned * max(1, channels)
        return 100 if expected and self.handled >= expected else int(100 * self.handled / expected) if expected else 0


def progress_from_counters(counters: dict[str, int], read: int = 0, clicked: int = 0) -> Progress:
    """Counters are flat Redis hash fields: ``planned``, ``sent:<channel>``, ``suppressed:<reason>``, ``failed``."""
    sent_by_channel = {k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("sent:") and v}
    reasons = {k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("suppressed:") and v}
    return Progress(
        planned=int(counters.get("planned", 0)),
        sent=sum(sent_by_channel.values()),
        suppressed=sum(reasons.values()),
        failed=int(counters.get("failed", 0)),
        read=read,
        clicked=clicked,
        suppressed_reasons=dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
        sent_by_channel=dict(sorted(sent_by_channel.items())),
    )
