"""Cancelling within a digest: the opener's role passes to the oldest member still standing, a cancelled member's
trigger drops out, all cancelled sends nothing, and once fired a digest of several no longer stops for one cancel."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from app.extensions import db
from app.models import Notification, WorkflowDigest, WorkflowRun
from app.models.types import utcnow
from tests.factories import make_recipient
from tests.integration.test_workflow_digest import digest_flow
from tests.integration.test_workflows import drain, run_of, trigger


def _sent() -> list[dict]:
    return [n.data for n in db.session.scalars(select(Notification).order_by(Notification.id))]


def _triggers(api, user: str, actors: list[str], **fields) -> list[int]:
    return [run_of(trigger(api, user, data={"actor": actor}, **fields)).id for actor in actors]


def _end_window(run_jobs) -> None:
    """The hour-long window ends now (so no test waits on a clock): the scheduler's pass then fires it."""
    now = utcnow()
    db.session.execute(update(WorkflowDigest).values(closes_at=now - timedelta(seconds=1)))
    db.session.execute(update(WorkflowRun).where(WorkflowRun.status == "running").values(next_at=now))
    db.session.commit()
    drain(run_jobs)
    drain(run_jobs)


def _status(run_id: int) -> str:
    db.session.expire_all()
    return db.session.get(WorkflowRun, run_id).status


def test_cancelling_the_opener_hands_the_digest_to_the_next_member_and_sends_it_once(api, run_jobs):
    digest_flow(api, window=3600)
    user = make_recipient().external_id
    opener, second, third, fourth = _triggers(api, user, ["Ana", "Bo", "Cy", "Di"])
    drain(run_jobs)
    assert api.post(f"/v1/workflow-runs/{opener}/cancel").json == {"cancelled": 1}
    assert api.post(f"/v1/workflow-runs/{third}/cancel").json == {"cancelled": 1}  # a member: its trigger drops out
    digest = db.session.scalar(select(WorkflowDigest))
    assert (digest.owner_run_id, digest.count, digest.state) == (second, 2, "open")
    _end_window(run_jobs)
    sent = _sent()
    assert [(d["count"], [e["actor"] for e in d["events"]]) for d in sent] == [(2, ["Bo", "Di"])]
    assert [_status(r) for r in (opener, second, third, fourth)] == ["cancelled", "completed", "cancelled", "stopped"]
    assert api.post(f"/v1/workflow-runs/{second}/cancel").json == {"cancelled": 0}  # it carried the digest out
    assert api.post(f"/v1/workflow-runs/{fourth}/cancel").json == {"cancelled": 0}  # its trigger went out


def test_cancelling_every_member_sends_nothing(api, run_jobs):
    digest_flow(api, window=3600)
    user = make_recipient().external_id
    runs = _triggers(api, user, ["Ana", "Bo", "Cy"], cancellation_key="post-9")
    drain(run_jobs)
    assert api.post("/v1/workflow-runs/cancel?key=post-9").json == {"cancelled": 3}
    _end_window(run_jobs)
    assert _sent() == []
    assert {_status(r) for r in runs} == {"cancelled"}
    assert db.session.scalar(select(WorkflowDigest.state)) == "dropped"
    run_of(trigger(api, user, data={"actor": "Ed"}))  # the key is free again: a new digest opens
    drain(run_jobs)
    assert db.session.scalar(select(func.count()).select_from(WorkflowDigest).where(WorkflowDigest.state == "open"))


def test_two_cancels_at_once_of_the_opener_and_its_heir_pass_the_digest_on_once(api, run_jobs, test_env):
    """Two API processes cancel the opener and the member next in line at the same moment; whichever order the
    database puts them in, the digest fires once with the third member."""
    import os
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT

    digest_flow(api, window=3600)
    user = make_recipient().external_id
    opener, heir, third = _triggers(api, user, ["Ana", "Bo", "Cy"])
    drain(run_jobs)
    db.session.commit()
    script = (
        "import sys\nfrom app import create_app\nfrom app.workflows.trigger import cancel_run\n"
        "with create_app().app_context():\n    print(cancel_run(int(sys.argv[1])))\n"
    )
    env = {**os.environ, **test_env}
    cancels = [
        subprocess.Popen([sys.executable, "-c", script, str(run_id)], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE)
        for run_id in (opener, heir)
    ]
    assert [int(c.communicate(timeout=60)[0]) for c in cancels] == [1, 1]
    _end_window(run_jobs)
    assert [[e["actor"] for e in d["events"]] for d in _sent()] == [["Cy"]]
    assert [_status(r) for r in (opener, heir, third)] == ["cancelled", "cancelled", "completed"]
