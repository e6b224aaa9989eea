"""Rule evaluation: which recipients are eligible right now, and claiming them in the sent log.

One evaluation of one rule:

1. ``present_zones``: the DISTINCT time zones among recipients (one cheap query).
2. :func:`app.rules.windows.plan` (pure) keeps the zones inside the send window
   now and groups them by local date.
3. Per local date, ONE set-based query (:func:`eligible_query`): recipients
   in those zones matching the audience, opt-in read live, anti-joined on the
   sent log. Then the claim: its ids are INSERTed into ``rule_sends`` in
   chunks, ``ON CONFLICT DO NOTHING``. The unique (recipient, rule,
   local_date) key, not the anti-join, is what makes two evaluators at the
   same moment claim each recipient once.
4. :func:`app.rules.send.send_claims` turns claims into notifications (and
   re-drives claims a crash left behind, with the same key).

Why select, then insert, instead of one ``INSERT ... SELECT``: PostgreSQL
never runs an INSERT's SELECT in parallel, and an INSERT that anti-joins the
table it writes to is planned on that table's statistics from before the
statement, so on a young sent log each new row made the next probe longer
(measured at 8 M recipients: 223 s, against 2.3 s for the query alone). The
scan is also kept apart from the per-recipient probes (a MATERIALIZED CTE):
costed together, the probes' price per row talked the planner into an index
scan on ``timezone`` that reads every heap page once per zone (9 s, 2.2 M
page reads) instead of one parallel sequential scan (1.9 s).

No Python loop ever runs over the recipients table; Python holds only the
ids of today's eligible recipients, a few hundred thousand at most.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, and_, case, exists, false, func, literal, not_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from app.audiences.filters import _reachable, compile_filter
from app.channels import address_fields
from app.delivery.constants import ALL_CATEGORIES
from app.delivery.routing import MARKETING_CATEGORY
from app.extensions import db
from app.models import Preference, Recipient, Rule, RuleSend, Suppression
from app.models.bulk import insert_ignoring_conflicts
from app.models.rules import CLAIMED
from app.rules import windows

SAMPLE_SIZE = 10
# Claims are inserted and committed this many at a time (a crash leaves the rest to the next evaluation).
CLAIM_CHUNK = 20_000


def present_zones() -> list[str | None]:
    """The distinct time zones among recipients, by skipping through the ``timezone`` index.

    ``SELECT DISTINCT`` reads every index entry (0.9 s at 8 M); the recursive
    query asks the index for "the next zone after this one" once per zone.
    """
    step = select(func.min(Recipient.timezone)).scalar_subquery()
    walk = select(step.label("zone")).cte("zones", recursive=True)
    following = select(func.min(Recipient.timezone)).where(Recipient.timezone > walk.c.zone).scalar_subquery()
    walk = walk.union_all(select(following).where(walk.c.zone.is_not(None)))
    zones: list[str | None] = list(db.session.scalars(select(walk.c.zone).where(walk.c.zone.is_not(None))))
    if db.session.scalar(select(exists().where(Recipient.timezone.is_(None)))):
        zones.append(None)
    return zones


def dialect_name() -> str:
    return db.session.get_bind().dialect.name


def _country():
    return func.upper(Recipient.attributes["country"].as_string())


def _no_zone(unknown_zones: tuple[str, ...]) -> ColumnElement:
    clause = Recipient.timezone.is_(None)
    return or_(clause, Recipient.timezone.in_(unknown_zones)) if unknown_zones else clause


def zone_clause(rule: Rule, target: windows.Target, unknown_zones: tuple[str, ...]) -> ColumnElement:
    """Recipients judged by a zone that is inside the window on ``target``'s local date."""
    parts = []
    if target.zones:
        parts.append(Recipient.timezone.in_(target.zones))
    no_zone = _no_zone(unknown_zones)
    if target.countries:
        parts.append(and_(no_zone, _country().in_(target.countries)))
    if target.utc_fallback:
        if rule.no_timezone_policy == windows.COUNTRY_POLICY:
            known = sorted(windows.country_zones())
            parts.append(and_(no_zone, or_(_country().is_(None), _country().not_in(known))))
        else:
            parts.append(no_zone)
    return or_(false(), *parts)


def zone_label_expression(rule: Rule, unknown_zones: tuple[str, ...]):
    """SQL twin of :func:`windows.zone_label`, stored on each claim."""
    no_zone = _no_zone(unknown_zones)
    whens = []
    if rule.no_timezone_policy == windows.COUNTRY_POLICY:
        whens.append((and_(no_zone, _country().in_(sorted(windows.country_zones()))), literal("country:") + _country()))
    whens.append((no_zone, literal("UTC")))
    return case(*whens, else_=Recipient.timezone)


def opted_out_categories(rule: Rule) -> list[str]:
    """Preference categories that switch this rule off on a channel (mirrors routing.opt_out_reason)."""
    categories = [ALL_CATEGORIES]
    if rule.type != "security":
        categories.append(rule.category)
    if rule.type == "marketing":
        categories.append(MARKETING_CATEGORY)
    return categories


def channel_open(rule: Rule, channel: str) -> ColumnElement:
    """Reachable on ``channel``, not opted out of it for this rule, its address not suppressed (STOP, bounce)."""
    disabled = exists(
        select(Preference.recipient_id).where(
            Preference.recipient_id == Recipient.id,
            Preference.channel == channel,
            Preference.category.in_(opted_out_categories(rule)),
            Preference.enabled.is_(False),
        )
    )
    conditions = [_reachable(channel), not_(disabled)]
    address_field = address_fields().get(channel)
    if address_field:
        address = getattr(Recipient, address_field)
        conditions.append(
            not_(exists(select(Suppression.id).where(Suppression.channel == channel, Suppression.address == address)))
        )
    return and_(*conditions)


def eligible_query(
    rule: Rule, target: windows.Target, unknown_zones: tuple[str, ...], now: datetime, *columns: ColumnElement
) -> Select:
    """SELECT ``columns`` of the recipients eligible for ``rule`` on ``target``'s local date.

    The scan (zones, hard stop, audience) runs first as a MATERIALIZED CTE on
    PostgreSQL, so it can go parallel; only its rows are probed for opt-outs,
    suppression and the sent log (see the module docstring for the numbers).
    """
    scanned = (
        select(Recipient.id)
        .where(
            zone_clause(rule, target, unknown_zones),
            Recipient.hard_stop.is_(False),
            compile_filter(rule.audience, dialect_name(), now),
        )
        .cte("scanned")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    already = exists(
        select(RuleSend.id).where(
            RuleSend.recipient_id == Recipient.id, RuleSend.rule_id == rule.id, RuleSend.local_date == target.period
        )
    )
    return (
        select(*columns)
        .select_from(scanned)
        .join(Recipient, Recipient.id == scanned.c.id)
        .where(or_(false(), *[channel_open(rule, channel) for channel in rule.channels]), not_(already))
    )


def count_eligible(rule: Rule, target: windows.Target, unknown_zones: tuple[str, ...], now: datetime) -> int:
    return db.session.scalar(eligible_query(rule, target, unknown_zones, now, func.count()))


def insert_claims(rule: Rule, period, now: datetime, chosen: list[tuple[int, str]]) -> int:
    """Claim ``(recipient id, zone label)`` pairs; the unique key skips anyone claimed meanwhile. Returns rows claimed."""
    return insert_ignoring_conflicts(
        RuleSend,
        [
            {
                "rule_id": rule.id,
                "recipient_id": recipient_id,
                "local_date": period,
                "timezone": zone,
                "status": CLAIMED,
                "claimed_at": now,
            }
            for recipient_id, zone in chosen
        ],
        ["recipient_id", "rule_id", "local_date"],
    )


def claim_target(rule: Rule, target: windows.Target, unknown_zones: tuple[str, ...], now: datetime) -> int:
    """Select who is eligible on one local date, then claim them in committed chunks. Returns rows claimed.

    A crash between chunks leaves the rest unclaimed; the next evaluation
    selects them again (the anti-join skips the ones already claimed).
    """
    chosen = sorted(
        db.session.execute(
            eligible_query(rule, target, unknown_zones, now, Recipient.id, zone_label_expression(rule, unknown_zones))
        ).all()
    )
    db.session.commit()
    claimed = 0
    for start in range(0, len(chosen), CLAIM_CHUNK):
        claimed += insert_claims(rule, target.period, now, chosen[start : start + CLAIM_CHUNK])
        db.session.commit()
    return claimed


@dataclass
class Evaluation:
    rule_id: int
    now: datetime
    targets: list[windows.Target] = field(default_factory=list)
    claimed: int = 0
    sent: int = 0
    waiting: int = 0
    expired: int = 0
    suppressed: int = 0


def evaluate_rule(rule: Rule, now: datetime, zones: list[str | None] | None = None, send: bool = True) -> Evaluation:
    """Claim every recipient eligible at ``now`` for ``rule``, then send every pending claim of the rule."""
    from app.rules.send import send_claims

    result = Evaluation(rule.id, now)
    if not rule.enabled:
        return result
    the_plan = windows.plan(
        now,
        present_zones() if zones is None else zones,
        rule.window_start,
        rule.window_end,
        rule.every_days,
        rule.no_timezone_policy,
    )
    result.targets = the_plan.targets
    for target in the_plan.targets:
        result.claimed += claim_target(rule, target, the_plan.unknown_zones, now)
    rule.last_evaluated_at = now
    db.session.commit()
    if send:
        outcome = send_claims(rule, now)
        result.sent, result.waiting, result.expired, result.suppressed = (
            outcome["sent"],
            outcome["waiting"],
            outcome["expired"],
            outcome["suppressed"],
        )
    return result


def evaluate_all(now: datetime) -> list[Evaluation]:
    """Evaluate every enabled rule once (the scheduler's periodic job)."""
    zones = present_zones()
    rules = db.session.scalars(select(Rule).where(Rule.enabled.is_(True)).order_by(Rule.id)).all()
    return [evaluate_rule(rule, now, zones) for rule in rules]


# -- dry run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRun:
    total: int
    by_zone: list[tuple[str, int]]
    sample: list[str]
    local_dates: list[str]


def dry_run(rule: Rule, now: datetime) -> DryRun:
    """Who would receive the rule if it were evaluated now: count per zone and a sample. Writes nothing."""
    the_plan = windows.plan(
        now, present_zones(), rule.window_start, rule.window_end, rule.every_days, rule.no_timezone_policy
    )
    counts: dict[str, int] = {}
    sample: list[str] = []
    label = zone_label_expression(rule, the_plan.unknown_zones)
    for target in the_plan.targets:
        query = eligible_query(rule, target, the_plan.unknown_zones, now, label, func.count())
        for name, count in db.session.execute(query.group_by(label)):
            counts[name] = counts.get(name, 0) + count
        if len(sample) < SAMPLE_SIZE:
            sample += db.session.scalars(
                eligible_query(rule, target, the_plan.unknown_zones, now, Recipient.external_id)
                .order_by(Recipient.id)
                .limit(SAMPLE_SIZE - len(sample))
            ).all()
    by_zone = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return DryRun(sum(counts.values()), by_zone, sample, [t.local_date.isoformat() for t in the_plan.targets])
