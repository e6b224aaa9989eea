"""A rule evaluation killed mid-run, and two evaluations at once: nobody twice, nobody lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import func, insert, select

from app.extensions import db
from app.models import Delivery, Notification, Recipient, Rule, RuleSend
from app.models.rules import CLAIMED, SENT
from app.models.types import utcnow
from app.rules.evaluate import evaluate_rule
from tests.conftest import PROJECT_ROOT
from tests.integration.test_rules import make_rule
from tests.peers.slow_link import SlowLink

NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)  # 11:00 in Lisbon


def seed(count: int) -> None:
    now = utcnow()
    rows = [
        {
            "external_id": f"crash-{n}",
            "email": None,
            "phone": None,
            "timezone": "Europe/Lisbon",
            "locale": "en",
            "attributes": {"balance": n % 40, "low_balance_threshold": 50},
            "hard_stop": False,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(count)
    ]
    db.session.execute(insert(Recipient), rows)
    db.session.commit()


def per_recipient_counts() -> list[int]:
    return db.session.scalars(select(func.count()).select_from(Notification).group_by(Notification.recipient_id)).all()


EVALUATOR = """
import sys
from datetime import datetime
from app import create_app
from app.extensions import db
from app.models import Rule
from app.rules.evaluate import evaluate_rule
app = create_app()
with app.app_context():
    evaluate_rule(db.session.get(Rule, int(sys.argv[1])), datetime.fromisoformat(sys.argv[2]))
"""


def test_sigkilled_evaluator_is_re_driven_without_duplicates_or_losses(app, test_env):
    """The evaluator reaches Redis over a slow link (each reply held 0.3 s), so every batch's realtime
    announcement takes at least that long and the SIGKILL lands mid-run: most often between a batch's commit
    (its claims sent, its in-app landed) and its announcement, or inside the next batch's transaction."""
    count = 3000
    seed(count)
    rule = make_rule()
    link = SlowLink.in_front_of(test_env["REDIS_URL"], delay=0.3).start()
    env = {**os.environ, **test_env, "HERALD_RULES_SEND_BATCH": "100", "REDIS_URL": link.url_for(test_env["REDIS_URL"])}
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", EVALUATOR, str(rule.id), NOW.isoformat()], cwd=PROJECT_ROOT, env=env
        )
        deadline = time.monotonic() + 60
        sent_before = 0
        while time.monotonic() < deadline and sent_before < 500:
            time.sleep(0.1)
            db.session.rollback()
            sent_before = db.session.scalar(select(func.count()).select_from(RuleSend).where(RuleSend.status == SENT))
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        link.stop()
    assert link.replies > 0, "the evaluator went through the slow link"
    db.session.rollback()
    claimed_left = db.session.scalar(select(func.count()).select_from(RuleSend).where(RuleSend.status == CLAIMED))
    sent_at_kill = db.session.scalar(select(func.count()).select_from(RuleSend).where(RuleSend.status == SENT))
    assert claimed_left > 0 and 500 <= sent_at_kill < count, "the kill must land mid-run"
    assert claimed_left + sent_at_kill == count  # every eligible recipient was claimed before any send

    result = evaluate_rule(db.session.get(Rule, rule.id), NOW)
    assert result.claimed == 0  # pending claims are re-driven, never claimed again
    assert result.sent == claimed_left
    assert db.session.scalar(select(func.count()).select_from(Notification)) == count
    assert set(per_recipient_counts()) == {1}
    undelivered = db.session.execute(
        select(Delivery.id, Delivery.status, Delivery.not_before, Delivery.reason, Delivery.last_error).where(
            Delivery.status != "DELIVERED"
        )
    ).all()
    assert undelivered == [], f"claimed_left {claimed_left}, sent_at_kill {sent_at_kill}"
    assert db.session.scalar(select(func.count()).select_from(RuleSend).where(RuleSend.status == SENT)) == count


# The claim pass in chunks of 50, each followed by a pause: a SIGKILL then lands between committed chunks.
SLOW_CLAIMING_EVALUATOR = """
import sys, time
from datetime import datetime
from app import create_app
from app.extensions import db
from app.models import Rule
from app.rules import evaluate
evaluate.CLAIM_CHUNK = 50
insert_claims = evaluate.insert_claims
def slow_insert_claims(*args):
    claimed = insert_claims(*args)
    time.sleep(0.05)
    return claimed
evaluate.insert_claims = slow_insert_claims
app = create_app()
with app.app_context():
    evaluate.evaluate_rule(db.session.get(Rule, int(sys.argv[1])), datetime.fromisoformat(sys.argv[2]))
"""


def test_evaluator_sigkilled_between_claim_chunks_claims_the_rest_next_time_and_sends_each_once(app, test_env):
    count = 2000
    seed(count)
    rule = make_rule()
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLAIMING_EVALUATOR, str(rule.id), NOW.isoformat()],
        cwd=PROJECT_ROOT,
        env={**os.environ, **test_env},
    )
    deadline = time.monotonic() + 60
    claimed_before = 0
    while time.monotonic() < deadline and claimed_before < 300:
        time.sleep(0.02)
        db.session.rollback()
        claimed_before = db.session.scalar(select(func.count()).select_from(RuleSend))
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    db.session.rollback()
    claimed_at_kill = db.session.scalar(select(func.count()).select_from(RuleSend))
    assert 300 <= claimed_at_kill < count, "the kill must land between claim chunks"
    assert claimed_at_kill % 50 == 0, "a chunk is committed whole or not at all"
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0, (
        "nothing is sent before the claim pass ends"
    )

    result = evaluate_rule(db.session.get(Rule, rule.id), NOW)
    assert result.claimed == count - claimed_at_kill
    assert result.sent == count
    assert set(per_recipient_counts()) == {1}
    assert db.session.scalar(select(func.count()).select_from(RuleSend).where(RuleSend.status == SENT)) == count


def test_two_evaluators_at_the_same_moment_send_once_each(app):
    count = 2000
    seed(count)
    rule_id = make_rule().id
    barrier = threading.Barrier(2)
    results, errors = [], []

    def evaluator():
        with app.app_context():
            try:
                barrier.wait()
                results.append(
                    evaluate_rule(
                        db.session.get(Rule, rule_id),
                        NOW,
                    )
                )
            except Exception as error:  # noqa: BLE001 -- surfaced by the assertion below
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=evaluator) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sum(r.claimed for r in results) == count
    assert db.session.scalar(select(func.count()).select_from(Notification)) == count
    assert set(per_recipient_counts()) == {1}
    assert db.session.scalar(select(func.count()).select_from(RuleSend)) == count
