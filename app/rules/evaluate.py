"""Rule evaluation: which recipients are eligible right now, and claiming them in the sent log.

One evaluation of one rule:

1. ``present_zones``: the DISTINCT time zones among recipients (one cheap query).
2. :func:`app.rules.windows.plan` (pure) keeps the zones inside the send window
   now and groups them by local date.
3. Per local date, ONE set-based ``INSERT INTO rule_sends ... SELECT ... FROM
   recipients WHERE <zones> AND <audience> AND <opt-in, read live> AND NOT
   EXISTS (<already in the sent log>) ON CONFLICT DO NOTHING``: the claim. The
   unique (recipient, rule, local_date) key, not the anti-join, is what makes
   two evaluators at the same moment claim each recipient once.
4. :func:`app.rules.send.send_claims` turns claims into notifications (and
   re-drives claims a crash left behind, with the same key).

No Python loop ever runs over the recipients table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, case, exists, false, func, literal, not_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from app.audiences.filters import _reachable, compile_filter
from app.channels import channel_class
from app.delivery.constants import ALL_CATEGORIES
from app.delivery.routing import MARKETING_CATEGORY
from app.extensions import db
from app.models import Preference, Recipient, Rule, RuleSend, Suppression
from app.models.rules import CLAIMED
from app.models.types import UTCDateTime
from app.rules import windows

SAMPLE_SIZE = 10


def present_zones() -> list[str | None]:
    """The distinct time zones among recipients (an index scan on recipients.timezone)."""
    return list(db.session.scalars(select(Recipient.timezone).distinct()))


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
    disabled = exists(select(Preference.recipient_id).where(
        Preference.recipient_id == Recipient.id, Preference.channel == channel,
        Preference.category.in_(opted_out_categories(rule)), Preference.enabled.is_(False)))
    conditions = [_reachable(channel), not_(disabled)]
    adapter = channel_class(channel)
    address_field = adapter.address_field if adapter else {"email": "email", "sms": "phone"}.get(channel)
    if address_field:
        address = getattr(Recipient, address_field)
        conditions.append(not_(exists(select(Suppression.id).where(
            Suppression.channel == channel, Suppression.address == address))))
    return and_(*conditions)


def eligibility(rule: Rule, target: windows.Target, unknown_zones: tuple[str, ...], now: datetime) -> list[ColumnElement]:
    """The WHERE clause of the eligibility query, opt-in read live, anti-joined on the sent log."""
    already = exists(select(RuleSend.id).where(
        RuleSend.recipient_id == Recipient.id, RuleSend.rule_id == rule.id, RuleSend.local_date == target.period))
    return [
        zone_clause(rule, target, unknown_zones),
        Recipient.hard_stop.is_(False),
        compile_filter(rule.audience, dialect_name(), now),
        or_(false(), *[channel_open(rule, channel) for channel in rule.channels]),
        not_(already),
    ]


def claim_target(rule: Rule, target: windows.Target, unknown_zones: tuple[str, ...], now: datetime) -> int:
    """INSERT the claims for one local date, set-based; the unique key decides. Returns rows claimed."""
    chosen = select(
        literal(rule.id), Recipient.id, literal(target.period), zone_label_expression(rule, unknown_zones),
        literal(CLAIMED), literal(now, UTCDateTime),
    ).where(*eligibility(rule, target, unknown_zones, now))
    dialect = postgresql if dialect_name() == "postgresql" else sqlite
    statement = dialect.insert(RuleSend).from_select(
        ["rule_id", "recipient_id", "local_date", "timezone", "status", "claimed_at"], chosen,
    ).on_conflict_do_nothing(index_elements=["recipient_id", "rule_id", "local_date"])
    claimed = db.session.execute(statement.execution_options(preserve_rowcount=True)).rowcount
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
    the_plan = windows.plan(now, present_zones() if zones is None else zones, rule.window_start, rule.window_end,
                            rule.every_days, rule.no_timezone_policy)
    result.targets = the_plan.targets
    for target in the_plan.targets:
        result.claimed += claim_target(rule, target, the_plan.unknown_zones, now)
    rule.last_evaluated_at = now
    db.session.commit()
    if send:
        outcome = send_claims(rule, now)
        result.sent, result.waiting, result.expired, result.suppressed = (
            outcome["sent"], outcome["waiting"], outcome["expired"], outcome["suppressed"])
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
    the_plan = windows.plan(now, present_zones(), rule.window_start, rule.window_end, rule.every_days,
                            rule.no_timezone_policy)
    counts: dict[str, int] = {}
    sample: list[str] = []
    for target in the_plan.targets:
        conditions = eligibility(rule, target, the_plan.unknown_zones, now)
        label = zone_label_expression(rule, the_plan.unknown_zones)
        for name, count in db.session.execute(select(label, func.count()).where(*conditions).group_by(label)):
            counts[name] = counts.get(name, 0) + count
        if len(sample) < SAMPLE_SIZE:
            sample += db.session.scalars(select(Recipient.external_id).where(*conditions)
                                         .order_by(Recipient.id).limit(SAMPLE_SIZE - len(sample))).all()
    by_zone = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return DryRun(sum(counts.values()), by_zone, sample, [t.local_date.isoformat() for t in the_plan.targets])
