"""The digest step: triggers sharing a key collected into one notification; every trigger in exactly one digest,
including triggers arriving while a digest fires."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

from sqlalchemy import func, select

from app.extensions import db
from app.models import Notification, WorkflowDigest, WorkflowRun, WorkflowStepRun
from tests.conftest import PROJECT_ROOT
from tests.factories import make_recipient, make_template
from tests.integration.test_workflows import drain, save, trigger

SUMMARY = {"en": {"in_app": {"title": "{{ data.count }} by {{ data.actors|join(', ') }}", "body": "b"}}}


def digest_flow(api, **digest):
    make_template("summary", SUMMARY)
    steps = [{"kind": "digest", **digest}, {"kind": "channel", "channel": "in_app", "template": "summary"}]
    response = save(api, steps=steps)
    assert response.status_code == 201, response.json


def titles() -> list[str]:
    return sorted(db.session.scalars(select(Notification.title).where(Notification.title.is_not(None))))


def test_triggers_sharing_a_key_make_one_notification_after_the_window(api, run_jobs):
    digest_flow(api, window=2, key="data.post_id")
    user = make_recipient().external_id
    for actor in ("Ana", "Bo", "Ana", "Cy", "Di"):
        trigger(api, user, data={"post_id": 1, "actor": actor})
    trigger(api, user, data={"post_id": 2, "actor": "Ed"})
    run_jobs()  # the queued jobs only: the owners' wake-ups are scheduled for the window's end
    statuses = Counter(db.session.scalars(select(WorkflowRun.status)))
    assert statuses == {"running": 2, "stopped": 4}
    time.sleep(2.1)
    drain(run_jobs)
    assert Counter(db.session.scalars(select(WorkflowRun.status))) == {"completed": 2, "stopped": 4}
    titles_sent = sorted(db.session.scalars(select(Notification.data)), key=lambda d: d["count"])
    assert [(d["count"], d["actors"]) for d in titles_sent] == [(1, ["Ed"]), (5, ["Ana", "Bo", "Cy"])]
    assert [e["actor"] for e in titles_sent[1]["events"]] == ["Ana", "Bo", "Ana", "Cy", "Di"]


def test_a_digest_closes_early_at_max_events_and_the_next_trigger_opens_another(api, run_jobs):
    digest_flow(api, window=3600, max_events=3)
    user = make_recipient().external_id
    for n in range(4):
        trigger(api, user, data={"actor": f"a{n}"})
    drain(run_jobs)
    drain(run_jobs)
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1
    assert [d.count for d in db.session.scalars(select(WorkflowDigest).order_by(WorkflowDigest.id))] == [3, 1]


TRIGGERER = """
import sys, time
from app import create_app
from app.extensions import db
from app.models import Recipient
from app.workflows.schemas import WorkflowTrigger
from app.workflows.trigger import trigger_workflow
from app.workflows.engine import advance
app = create_app()
with app.app_context():
    n = 0
    stop = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < stop:
        accepted = trigger_workflow(WorkflowTrigger(workflow="flow", user_id="u", data={"actor": f"a{n}"}), None, None)
        advance(accepted.workflow_run_id)
        n += 1
    print(n)
"""


def test_every_trigger_lands_in_exactly_one_digest_while_digests_fire(api, test_env):
    digest_flow(api, window=1)
    make_recipient(external_id="u")
    env = {**os.environ, **test_env, "HERALD_WORKFLOW_LEASE_SECONDS": "0"}
    triggerer = subprocess.Popen(
        [sys.executable, "-c", TRIGGERER, "4"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    from app.workflows.engine import advance

    while triggerer.poll() is None:  # this process fires digests as their windows end, while triggers keep coming
        db.session.rollback()
        for run_id in db.session.scalars(select(WorkflowRun.id).where(WorkflowRun.status == "running")).all():
            advance(run_id)
        time.sleep(0.05)
    made = int(triggerer.stdout.read())
    time.sleep(1.1)
    for _ in range(3):
        db.session.rollback()
        for run_id in db.session.scalars(select(WorkflowRun.id).where(WorkflowRun.status == "running")).all():
            advance(run_id)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(WorkflowRun)) == made
    assert set(db.session.scalars(select(WorkflowRun.status))) == {"completed", "stopped"}
    counted = sum(n.data["count"] for n in db.session.scalars(select(Notification)))
    assert counted == made  # none lost, none in two
    actors = [e["actor"] for n in db.session.scalars(select(Notification)) for e in n.data["events"]]
    assert len(actors) == len(set(actors)) == made
    in_digest = db.session.scalar(
        select(func.count()).select_from(WorkflowStepRun).where(WorkflowStepRun.digest_id.is_not(None))
    )
    assert in_digest == made
    assert db.session.scalar(select(func.count()).select_from(WorkflowDigest)) >= 2  # digests fired while triggers came
