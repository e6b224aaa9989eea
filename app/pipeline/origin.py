"""Where a notification came from, and what that origin says about sending it now.

Every notification stores its origin (``notifications.origin``): ``api``,
``campaign:<id>``, ``rule:<id>`` or ``workflow:<run id>:<step index>``.
Before *every* send -- first try, retry, the reaper's re-drive, a dead-letter
retry from the console -- the pipeline asks :func:`verdicts` once per chunk:

- a paused campaign's delivery waits (it is handed back later, unclaimed);
- a cancelled campaign's, or one whose campaign has ended, is SUPPRESSED
  (``campaign_cancelled`` / ``campaign_ended``);
- a rule's delivery outside the rule's send window, in the recipient's
  *current* zone, is SUPPRESSED ``outside_send_window`` -- nothing is sent late;
- a workflow step's delivery whose run was cancelled is SUPPRESSED ``workflow_cancelled``.

Nothing else decides this, and nothing parses keys to find out where a delivery came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

from sqlalchemy import select

from app.extensions import db
from app.models import Campaign, Rule, RuleSend, WorkflowRun
from app.models.bulk import among
from app.models.campaigns import CANCELLED, PAUSED
from app.models.workflows import CANCELLED as RUN_CANCELLED
from app.rules import windows

API = "api"
CAMPAIGN = "campaign"
RULE = "rule"
WORKFLOW = "workflow"

SEND = "send"
WAIT = "wait"
SUPPRESS = "suppress"

CAMPAIGN_CANCELLED = "campaign_cancelled"
CAMPAIGN_ENDED = "campaign_ended"
OUTSIDE_WINDOW = "outside_send_window"
RULE_REMOVED = "rule_removed"
WORKFLOW_CANCELLED = "workflow_cancelled"
# How long a paused campaign's delivery waits before it is looked at again.
PAUSE_RECHECK = timedelta(seconds=30)


def of_campaign(campaign_id: int) -> str:
    return f"{CAMPAIGN}:{campaign_id}"


def of_rule(rule_id: int) -> str:
    return f"{RULE}:{rule_id}"


def of_workflow_step(run_id: int, step_index: int) -> str:
    return f"{WORKFLOW}:{run_id}:{step_index}"


@lru_cache(maxsize=4096)
def parse(origin: str | None) -> tuple[str, int | None]:
    """``("campaign", 12)``, ``("rule", 7)`` or ``("api", None)``. Cached: a chunk has a few origins, read per delivery."""
    kind, _, ident = (origin or API).partition(":")
    return (kind, int(ident)) if ident.isdigit() else (API, None)


@dataclass(frozen=True)
class Verdict:
    action: str
    reason: str | None = None


GO = Verdict(SEND)


class Target(NamedTuple):
    """What the policy needs to know about one delivery."""

    delivery_id: int
    notification_id: str
    origin: str | None
    timezone: str | None
    country: str | None


def campaign_verdict(status: str | None, ends_at: datetime | None, now: datetime) -> Verdict:
    if status == CANCELLED:
        return Verdict(SUPPRESS, CAMPAIGN_CANCELLED)
    if ends_at is not None and now >= ends_at:
        return Verdict(SUPPRESS, CAMPAIGN_ENDED)
    if status == PAUSED:
        return Verdict(WAIT)
    return GO


def rule_verdict(rule: Rule | None, period, target: Target, now: datetime) -> Verdict:
    if rule is None:
        return Verdict(SUPPRESS, RULE_REMOVED)
    if period is None:
        return GO
    verdict = windows.recheck(
        now,
        period,
        target.timezone,
        target.country,
        rule.window_start,
        rule.window_end,
        rule.every_days,
        rule.no_timezone_policy,
    )
    return GO if verdict == windows.SEND else Verdict(SUPPRESS, OUTSIDE_WINDOW)


def verdicts(targets: list[Target], now: datetime) -> dict[int, Verdict]:
    """The origin's verdict for each delivery, read live (a pause or cancel lands before the next send)."""
    by_kind: dict[str, set[int]] = {CAMPAIGN: set(), RULE: set()}
    for target in targets:
        kind, ident = parse(target.origin)
        if kind in by_kind:
            by_kind[kind].add(ident)
    campaigns = {}
    if by_kind[CAMPAIGN]:
        campaigns = {
            row.id: row
            for row in db.session.execute(
                select(Campaign.id, Campaign.status, Campaign.ends_at).where(Campaign.id.in_(by_kind[CAMPAIGN]))
            )
        }
    rules, periods = {}, {}
    if by_kind[RULE]:
        rules = {rule.id: rule for rule in db.session.scalars(select(Rule).where(Rule.id.in_(by_kind[RULE])))}
        rule_notes = [t.notification_id for t in targets if parse(t.origin)[0] == RULE]
        periods = dict(
            db.session.execute(
                select(RuleSend.notification_id, RuleSend.local_date).where(among(RuleSend.notification_id, rule_notes))
            ).all()
        )
    result = {}
    for target in targets:
        kind, ident = parse(target.origin)
        if kind == CAMPAIGN and ident in campaigns:
            row = campaigns[ident]
            result[target.delivery_id] = campaign_verdict(row.status, row.ends_at, now)
        elif kind == RULE:
            result[target.delivery_id] = rule_verdict(
                rules.get(ident), periods.get(target.notification_id), target, now
            )
        else:
            result[target.delivery_id] = GO
    result.update(workflow_verdicts(targets))
    return result


def workflow_verdicts(targets: list[Target]) -> dict[int, Verdict]:
    """Workflow steps (``workflow:<run>:<step>``, kept apart from the kinds above): a cancelled run's sends stop."""
    runs = {}
    for target in targets:
        kind, _, rest = (target.origin or "").partition(":")
        run_id = rest.partition(":")[0]
        if kind == WORKFLOW and run_id.isdigit():
            runs[target.delivery_id] = int(run_id)
    if not runs:
        return {}
    cancelled = set(
        db.session.scalars(
            select(WorkflowRun.id).where(WorkflowRun.id.in_(set(runs.values())), WorkflowRun.status == RUN_CANCELLED)
        )
    )
    return {d: Verdict(SUPPRESS, WORKFLOW_CANCELLED) for d, run_id in runs.items() if run_id in cancelled}
