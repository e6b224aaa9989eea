"""Delivery analytics: every number is one SQL aggregate over a cohort of notifications.

The cohort is the notifications *created* in the period (optionally of one
campaign), and each of its deliveries counts whatever it has become since,
so a funnel's stages describe the same set of notifications. Percentiles use
``percentile_cont`` on PostgreSQL; SQLite has none, so there each percentile
reads at most two rows of an ordered query (LIMIT 2 OFFSET k) and
interpolates the same way, keeping the answers identical and the work
bounded whatever the table size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import case, func, select

from app.channels import in_list_order
from app.delivery.constants import DELIVERED, DISPATCHED, FAILED, PRIORITIES, SUPPRESSED
from app.extensions import db
from app.models import Delivery, Notification
from app.workflows.stats import WorkflowSends, sends_by_workflow_step

PERIODS = {
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}
MAX_CUSTOM_DAYS = 92
PERCENTILES = (0.5, 0.9, 0.99)
FUNNEL_STAGES = ("accepted", "routed", "suppressed", "dispatched", "delivered", "read", "clicked")


class PeriodError(ValueError):
    """A custom period the picker cannot use; the message is for the person who typed it."""


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    start: datetime
    end: datetime


def resolve_period(key: str | None, start_text: str = "", end_text: str = "", now: datetime | None = None) -> Period:
    """``24h`` / ``7d`` / ``30d`` end now; ``custom`` covers whole UTC days from start to end, inclusive."""
    now = now or datetime.now(UTC)
    if key != "custom":
        label, span = PERIODS.get(key or "", PERIODS["24h"])
        return Period(key if key in PERIODS else "24h", label, now - span, now)
    try:
        first, last = date.fromisoformat(start_text.strip()), date.fromisoformat(end_text.strip())
    except ValueError:
        raise PeriodError("Give the custom period's start and end as dates (YYYY-MM-DD).") from None
    if last < first:
        raise PeriodError("The end date is before the start date.")
    if (last - first).days + 1 > MAX_CUSTOM_DAYS:
        raise PeriodError(f"A custom period can span at most {MAX_CUSTOM_DAYS} days.")
    start = datetime.combine(first, time(0), UTC)
    return Period(
        "custom",
        f"{first.isoformat()} to {last.isoformat()}",
        start,
        datetime.combine(last, time(0), UTC) + timedelta(days=1),
    )


# -- cohort ---------------------------------------------------------------------------------------


def coerce_campaign(raw: str | None) -> int | None:
    """The campaign filter as an id, or None; raises PeriodError on a malformed id."""
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise PeriodError(f"{raw!r} is not a campaign id.") from None


def _cohort(statement, period: Period, campaign=None):
    statement = statement.where(Notification.created_at >= period.start, Notification.created_at < period.end)
    if campaign is not None:
        statement = statement.where(Notification.campaign_id == campaign)
    return statement


def _dialect() -> str:
    return db.session.get_bind().dialect.name


# -- the numbers ----------------------------------------------------------------------------------


def funnel(period: Period, campaign=None) -> dict[str, int]:
    """accepted -> routed (notifications), suppressed -> dispatched -> delivered (deliveries), read, clicked."""
    notes = db.session.execute(
        _cohort(
            select(
                func.count(),
                func.count(Notification.routed_at),
                func.count(Notification.read_at),
                func.count(Notification.clicked_at),
            ),
            period,
            campaign,
        )
    ).one()
    deliveries = db.session.execute(
        _cohort(
            select(
                func.count(case((Delivery.status == SUPPRESSED, 1))),
                func.count(Delivery.dispatched_at),
                func.count(case((Delivery.status == DELIVERED, 1))),
            )
            .select_from(Delivery)
            .join(Notification, Notification.id == Delivery.notification_id),
            period,
            campaign,
        )
    ).one()
    values = (notes[0], notes[1], deliveries[0], deliveries[1], deliveries[2], notes[2], notes[3])
    return {stage: int(value or 0) for stage, value in zip(FUNNEL_STAGES, values, strict=True)}


@dataclass(frozen=True)
class ChannelRate:
    channel: str
    total: int
    suppressed: int
    sent: int  # accepted by the provider (dispatched) or confirmed delivered
    failed: int

    @property
    def attempted(self) -> int:
        return self.total - self.suppressed

    @property
    def rate(self) -> float | None:
        """Sent over what was attempted (suppressed ones were never meant to go); None when nothing was."""
        return self.sent / self.attempted if self.attempted else None


def channel_rates(period: Period, campaign=None) -> list[ChannelRate]:
    rows = db.session.execute(
        _cohort(
            select(
                Delivery.channel,
                func.count(),
                func.count(case((Delivery.status == SUPPRESSED, 1))),
                func.count(case((Delivery.status.in_((DISPATCHED, DELIVERED)), 1))),
                func.count(case((Delivery.status == FAILED, 1))),
            )
            .join(Notification, Notification.id == Delivery.notification_id)
            .group_by(Delivery.channel),
            period,
            campaign,
        )
    ).all()
    found = {row[0]: ChannelRate(*row) for row in rows}
    known = in_list_order(found)
    order = known + sorted(set(found) - set(known))
    return [found[c] for c in order]


def failure_breakdown(period: Period, campaign=None) -> list[tuple[str, str, int]]:
    """(channel, error code, failed deliveries), most frequent first."""
    rows = db.session.execute(
        _cohort(
            select(Delivery.channel, Delivery.error_code, func.count())
            .join(Notification, Notification.id == Delivery.notification_id)
            .where(Delivery.status == FAILED)
            .group_by(Delivery.channel, Delivery.error_code)
            .order_by(func.count().desc(), Delivery.channel),
            period,
            campaign,
        )
    ).all()
    return [(channel, code or "unknown", int(count)) for channel, code, count in rows]


def interpolate(low: float, high: float | None, fraction: float) -> float:
    """percentile_cont's linear interpolation between the two rows around the percentile's rank."""
    return low if high is None else low + (high - low) * fraction


@dataclass(frozen=True)
class Latency:
    priority: str
    count: int
    seconds: dict[float, float] = field(default_factory=dict)  # percentile -> seconds


def latency_percentiles(period: Period, campaign=None) -> list[Latency]:
    """created -> delivered, per priority, for deliveries that were delivered."""

    def joined(statement):
        statement = statement.join(Notification, Notification.id == Delivery.notification_id)
        return _cohort(statement.where(Delivery.delivered_at.is_not(None)), period, campaign)

    if _dialect() == "postgresql":
        seconds = func.extract("epoch", Delivery.delivered_at - Notification.created_at)
        rows = db.session.execute(
            joined(
                select(
                    Notification.priority,
                    func.count(),
                    *[func.percentile_cont(p).within_group(seconds) for p in PERCENTILES],
                )
                .select_from(Delivery)
                .group_by(Notification.priority)
            )
        ).all()
        found = {
            row[0]: Latency(row[0], int(row[1]), {p: float(v) for p, v in zip(PERCENTILES, row[2:], strict=True)})
            for row in rows
        }
    else:
        seconds = (func.julianday(Delivery.delivered_at) - func.julianday(Notification.created_at)) * 86400.0
        counts = db.session.execute(
            joined(select(Notification.priority, func.count()).select_from(Delivery).group_by(Notification.priority))
        ).all()
        found = {}
        for priority, count in counts:
            values = {}
            for p in PERCENTILES:
                rank = p * (count - 1)
                pair = list(
                    db.session.scalars(
                        joined(select(seconds).select_from(Delivery).where(Notification.priority == priority))
                        .order_by(seconds)
                        .limit(2)
                        .offset(int(math.floor(rank)))
                    )
                )
                values[p] = interpolate(pair[0], pair[1] if len(pair) > 1 else None, rank - math.floor(rank))
            found[priority] = Latency(priority, int(count), values)
    order = [p for p in reversed(PRIORITIES) if p in found] + sorted(set(found) - set(PRIORITIES))
    return [found[p] for p in order]


def _hour_bucket(column):
    if _dialect() == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24:00")
    return func.strftime("%Y-%m-%d %H:00", column)


def hour_slots(period: Period) -> list[datetime]:
    """Every UTC hour the period touches, the first one partly."""
    first = period.start.replace(minute=0, second=0, microsecond=0)
    return [first + timedelta(hours=n) for n in range(math.ceil((period.end - first).total_seconds() / 3600))]


def sends_per_hour(period: Period, campaign=None) -> list[tuple[datetime, int]]:
    """Deliveries handed to a provider (or the inbox) per UTC hour of the period, empty hours as 0."""
    bucket = _hour_bucket(Delivery.dispatched_at)
    statement = (
        select(bucket, func.count())
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Delivery.dispatched_at >= period.start, Delivery.dispatched_at < period.end)
        .group_by(bucket)
    )
    if campaign is not None:
        statement = statement.where(Notification.campaign_id == campaign)
    counts = {
        datetime.strptime(label, "%Y-%m-%d %H:%M").replace(tzinfo=UTC): int(n)
        for label, n in db.session.execute(statement)
    }
    return [(slot, counts.get(slot, 0)) for slot in hour_slots(period)]


# -- charts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    ticks: list[tuple[float, str]]  # x position, label under the axis


def bar_chart(points: list[tuple[datetime, int]], width: int = 720, height: int = 160, max_ticks: int = 8) -> Chart:
    """Geometry for an inline SVG bar chart; the template only draws what this returns."""
    peak = max((value for _, value in points), default=0)
    slot = width / len(points) if points else width
    gap = 1.0 if slot > 3 else 0.0
    bars = []
    for index, (moment, value) in enumerate(points):
        bar_height = (value / peak) * (height - 4) if peak else 0.0
        bars.append(
            Bar(
                round(index * slot, 2),
                round(height - bar_height, 2),
                round(max(slot - gap, 0.5), 2),
                round(bar_height, 2),
                f"{moment:%Y-%m-%d %H:00} UTC: {value}",
            )
        )
    every = max(1, math.ceil(len(points) / max_ticks))
    daily = len(points) > 48
    ticks = [
        (round(index * slot, 2), f"{moment:%m-%d}" if daily else f"{moment:%H:00}")
        for index, (moment, _value) in enumerate(points)
        if index % every == 0
    ]
    return Chart(width, height, bars, peak, ticks)


@dataclass(frozen=True)
class Report:
    period: Period
    campaign: object
    funnel: dict[str, int]
    channels: list[ChannelRate]
    failures: list[tuple[str, str, int]]
    latency: list[Latency]
    sends: list[tuple[datetime, int]]
    chart: Chart
    workflows: list[WorkflowSends]  # none when a campaign is chosen: a campaign's sends are not a workflow's


def report(period: Period, campaign=None) -> Report:
    sends = sends_per_hour(period, campaign)
    return Report(
        period,
        campaign,
        funnel(period, campaign),
        channel_rates(period, campaign),
        failure_breakdown(period, campaign),
        latency_percentiles(period, campaign),
        sends,
        bar_chart(sends),
        sends_by_workflow_step(period.start, period.end) if campaign is None else [],
    )
