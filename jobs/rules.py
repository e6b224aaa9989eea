"""Daily rules in the background: the periodic evaluation and the batch jobs that send to external channels."""

from __future__ import annotations

import logging
from datetime import datetime

from app.extensions import db
from app.redis_client import get_redis, key

log = logging.getLogger(__name__)


def evaluation_slot(now: datetime, minutes: int) -> int:
    """Evaluations are aligned to the clock (:00, :15, ...), so 09:00 local is evaluated at 09:00, not 09:07."""
    return int(now.timestamp()) // (minutes * 60)


def evaluate_rules_if_due(now: datetime, minutes: int) -> list | None:
    """Run one evaluation pass per clock slot, however often the scheduler ticks and however many schedulers run.

    The slot is marked done only after a pass completes, so a pass a crash cut
    short is run again at the next tick (its claims are re-driven, not re-made).
    """
    from app.rules.evaluate import evaluate_all

    slot = evaluation_slot(now, minutes)
    done_key = key("rules", "evaluated-slot")
    last = get_redis().get(done_key)
    if last is not None and int(last) >= slot:
        return None
    results = evaluate_all(now)
    get_redis().set(done_key, slot, ex=minutes * 60 * 4)
    for result in results:
        log.info(
            "rule %s evaluated at %s: %d claimed, %d sent, %d waiting, %d expired, %d suppressed",
            result.rule_id,
            now.isoformat(),
            result.claimed,
            result.sent,
            result.waiting,
            result.expired,
            result.suppressed,
        )
    db.session.remove()
    return results


def dispatch_rule_deliveries(rule_id: int, delivery_ids: list[int]) -> dict:
    """RQ job queued before the one pipeline existed; the pipeline re-checks the rule's window itself."""
    from app.pipeline.deliver import deliver

    return dict(deliver(delivery_ids).counts)
