"""Workflow runs advanced by two workers at once, and by a worker SIGKILLed mid-step: each step taken once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

from sqlalchemy import func, select

from app.delivery.constants import DELIVERED
from app.extensions import db
from app.models import Delivery, Notification, WorkflowRun, WorkflowStepRun
from app.models.types import utcnow
from app.workflows import acts, engine, steps
from app.workflows.engine import advance
from tests.conftest import PROJECT_ROOT
from tests.factories import make_recipient, make_template

# Step 1 escalates: SMS is suppressed at routing (no phone), so in-app follows -- two sends of one step.
STEPS = [
    {"kind": "channel", "channel": "in_app", "template": "hello"},
    {"kind": "escalation", "template": "alert", "channels": [{"channel": "sms", "wait": 30}, {"channel": "in_app"}]},
    {"kind": "condition", "data": {"field": "data.n", "op": ">=", "value": 0}},
    {"kind": "channel", "channel": "in_app", "template": "hello"},
]
EXPECTED = {0: 1, 1: 2, 3: 1}  # notifications per step

ADVANCER = """
import sys, time
from app import create_app
from app.extensions import db
from app.models import WorkflowRun
from app.workflows import acts, engine
delay = float(sys.argv[1])
route = acts.route_if_unrouted
def slow_route(notification_id):
    time.sleep(delay)  # the step's claim and act are committed; routing and moving on are not
    route(notification_id)
acts.route_if_unrouted = slow_route
app = create_app()
with app.app_context():
    ids = [int(i) for i in sys.argv[2:]]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for run_id in ids:
            engine.advance(run_id)
        db.session.expire_all()
        if all(db.session.get(WorkflowRun, i).status != "running" for i in ids):
            break
"""


def make_runs(api, count: int) -> list[int]:
    make_template("hello", {"en": {"in_app": {"title": "Hello", "body": "b"}}})
    make_template("alert", {"en": {"in_app": {"title": "Alert", "body": "b"}, "sms": {"text": "Alert"}}})
    assert api.put("/v1/workflows/flow", json={"name": "Flow", "steps": STEPS}).status_code == 201
    users = [make_recipient(phone=None).external_id for _ in range(count)]
    runs = []
    for n, user in enumerate(users):
        response = api.post("/v1/notifications", json={"workflow": "flow", "user_id": user, "data": {"n": n}})
        runs.append(response.json["workflow_run_id"])
    return runs  # their jobs stay queued, unrun: the processes below advance them


def start_advancer(test_env, delay: float, run_ids: list[int], lease: int) -> subprocess.Popen:
    env = {**os.environ, **test_env, "HERALD_WORKFLOW_LEASE_SECONDS": str(lease)}
    return subprocess.Popen([sys.executable, "-c", ADVANCER, str(delay), *map(str, run_ids)], cwd=PROJECT_ROOT, env=env)


def assert_each_step_taken_once(run_ids: list[int]) -> None:
    db.session.expire_all()
    assert {db.session.get(WorkflowRun, r).status for r in run_ids} == {"completed"}
    origins = Counter(db.session.scalars(select(Notification.origin)))
    for run_id in run_ids:
        taken = {int(o.rsplit(":", 1)[1]): n for o, n in origins.items() if o.startswith(f"workflow:{run_id}:")}
        assert taken == EXPECTED, (run_id, taken)
    rows = db.session.scalar(select(func.count()).select_from(WorkflowStepRun))
    assert rows == len(run_ids) * len(STEPS)
    in_app = db.session.scalars(select(Delivery.status).where(Delivery.channel == "in_app")).all()
    assert len(in_app) == 3 * len(run_ids) and set(in_app) == {DELIVERED}, unexpected_routing()


def unexpected_routing() -> list[tuple]:
    """The notifications that did not end as expected (origin, status, its delivery): printed when a count
    disagrees."""
    rows = db.session.execute(
        select(Notification.origin, Notification.status, Delivery.channel, Delivery.status)
        .outerjoin(Delivery, Delivery.notification_id == Notification.id)
        .order_by(Notification.origin)
    ).all()
    return [tuple(row) for row in rows if row[3] not in (DELIVERED, "SUPPRESSED")]


def test_three_workers_advancing_the_same_runs_at_once_take_each_step_once(api, test_env):
    run_ids = make_runs(api, 40)
    # A lease of 0: each worker takes every run whenever it looks, so all really are inside the same steps. Three
    # workers and a short pause caught an escalation settled on a row that routing had reloaded (its new
    # notification never routed) in about one run of two; two workers and 20 runs, in one CI run of many.
    workers = [start_advancer(test_env, 0.005, run_ids, lease=0) for _ in range(3)]
    for worker in workers:
        assert worker.wait(180) == 0
    assert_each_step_taken_once(run_ids)


def test_an_escalation_another_worker_moves_on_while_this_one_routes_still_routes_what_it_sent(api, monkeypatch):
    """The race the three-worker test found, made certain: while this worker routes the escalation's SMS, another
    moves the step to its in-app phase and has not routed that notification yet. This worker must not settle the
    step on the row routing reloaded (the in-app notification would never be routed)."""
    [run_id] = make_runs(api, 1)
    route = acts.route_if_unrouted
    moved_on = []

    def route_while_another_worker_escalates(notification_id: str) -> None:
        route(notification_id)
        row = db.session.scalar(
            select(WorkflowStepRun).where(WorkflowStepRun.run_id == run_id, WorkflowStepRun.step_index == 1)
        )
        if row is not None and row.phase == 1 and not moved_on:
            run = db.session.get(WorkflowRun, run_id)
            other = steps.Context(run, 1, engine.definition_of(run.version_id)[1], "another worker", utcnow())
            moved_on.append(steps._escalate(other, row, 1, list(row.sent)).sent[-1]["notification_id"])

    monkeypatch.setattr(acts, "route_if_unrouted", route_while_another_worker_escalates)
    assert advance(run_id) == "completed"
    assert moved_on
    assert_each_step_taken_once([run_id])


def test_a_worker_sigkilled_mid_step_is_resumed_without_skipping_or_repeating_a_step(api, test_env):
    run_ids = make_runs(api, 10)
    worker = start_advancer(test_env, 0.3, run_ids, lease=1)
    deadline = time.monotonic() + 60
    mid_step = False
    while time.monotonic() < deadline and not mid_step:
        time.sleep(0.05)
        db.session.rollback()
        started = db.session.scalar(select(func.count()).select_from(WorkflowStepRun))
        unrouted = db.session.scalar(
            select(func.count()).select_from(Notification).where(Notification.status == "accepted")
        )
        mid_step = started >= 5 and unrouted > 0
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    assert mid_step, "the kill must land after a step's claim and act, before it was routed"
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(WorkflowRun).where(WorkflowRun.status == "running"))

    time.sleep(1.2)  # the killed worker's lease runs out; then any worker (here: this process) resumes
    for _ in range(10):
        for run_id in run_ids:
            advance(run_id)
    assert_each_step_taken_once(run_ids)
