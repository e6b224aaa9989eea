"""Cancelling within a digest: the opener's role passes to the oldest member still standing, a cancelled member's
trigger drops out, all cancelled sends nothing, and once fired a digest of several no longer stops for one cancel."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import Notification, WorkflowDigest, WorkflowRun
from app.models.types import utcnow
from app.workflows.engine import advance
from app.workflows.schemas import WorkflowTrigger
from app.workflows.trigger import cancel_run, trigger_workflow
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


def _at_once(*calls):
    """Run each call in its own thread, app context and database session, started together; their results."""
    app = current_app._get_current_object()
    start = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(index, call):
        with app.app_context():
            start.wait()
            results[index] = call()
            db.session.remove()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_two_cancels_at_once_of_the_opener_and_its_heir_pass_the_digest_on_once(api, run_jobs):
    """Two sessions cancel the opener and the member next in line at the same moment; whichever order the database
    puts them in, the digest fires once with the third member."""
    digest_flow(api, window=3600)
    user = make_recipient().external_id
    opener, heir, third = _triggers(api, user, ["Ana", "Bo", "Cy"])
    drain(run_jobs)
    db.session.commit()
    assert _at_once(lambda: cancel_run(opener), lambda: cancel_run(heir)) == [1, 1]
    _end_window(run_jobs)
    assert [[e["actor"] for e in d["events"]] for d in _sent()] == [["Cy"]]
    assert [_status(r) for r in (opener, heir, third)] == ["cancelled", "cancelled", "completed"]


def test_a_cancel_at_the_moment_the_opener_fires_either_hands_over_or_finds_it_carried(api, run_jobs):
    """The opener fires (its window over) while it is cancelled: either the cancel came first and the next member
    fires the digest, or the firing did and the cancel changes nothing. One digest, both triggers or the heir's."""
    digest_flow(api, window=3600)
    user = make_recipient().external_id
    opener, heir = _triggers(api, user, ["Ana", "Bo"])
    drain(run_jobs)
    now = utcnow()
    db.session.execute(update(WorkflowDigest).values(closes_at=now - timedelta(seconds=1)))
    db.session.execute(update(WorkflowRun).where(WorkflowRun.id == opener).values(next_at=now))
    db.session.commit()
    fired, cancelled = _at_once(lambda: advance(opener), lambda: cancel_run(opener))
    _end_window(run_jobs)
    actors = [[e["actor"] for e in d["events"]] for d in _sent()]
    if cancelled:
        assert actors == [["Bo"]] and _status(heir) == "completed"
    else:
        assert actors == [["Ana", "Bo"]] and _status(opener) == "completed"


def _trigger_and_cancel(seconds: float, seed: int) -> None:
    """Digests of three, one post each; the opener (sometimes a member too) cancelled about when its window ends
    and the digest fires."""
    chance = random.Random(seed)
    due, post = [], 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop or due:
        if time.monotonic() < stop:
            runs = []
            for member in range(3):
                data = {"post_id": post, "actor": f"{post}-{member}"}
                runs.append(trigger_workflow(WorkflowTrigger(workflow="flow", user_id="u", data=data), None, None))
                advance(runs[-1].workflow_run_id)
            targets = [runs[0]] + ([chance.choice(runs[1:])] if chance.random() < 0.3 else [])
            due += [(time.monotonic() + chance.uniform(0.7, 1.3), r.workflow_run_id) for r in targets]
            post += 1
        for at, run_id in [d for d in due if d[0] <= time.monotonic()]:
            cancel_run(run_id)
            due.remove((at, run_id))
        time.sleep(0.05)


def _advance_running(until: threading.Event | None = None) -> None:
    while True:
        db.session.rollback()
        for run_id in db.session.scalars(select(WorkflowRun.id).where(WorkflowRun.status == "running")).all():
            advance(run_id)
        if until is None or until.is_set():
            return
        time.sleep(0.05)


def test_cancels_racing_digests_as_they_fire_lose_no_trigger_and_send_none_twice(api):
    """One session triggers digests and cancels their openers (and some members) around the moment they fire;
    another fires them as their windows end. Every trigger not cancelled is sent exactly once, in a send that was
    not cancelled; no digest is left behind."""
    digest_flow(api, window=1, key="data.post_id")
    make_recipient(external_id="u")
    db.session.commit()
    done = threading.Event()

    def trigger_then_stop():
        _trigger_and_cancel(2, seed=7)
        done.set()

    _at_once(trigger_then_stop, lambda: _advance_running(until=done))
    time.sleep(1.1)
    for _ in range(3):
        _advance_running()
    status = dict(db.session.execute(select(WorkflowRun.id, WorkflowRun.status)).all())
    assert "running" not in status.values()
    standing = sorted(r.data["actor"] for r in db.session.scalars(select(WorkflowRun)) if status[r.id] != "cancelled")
    sent = sorted(
        event["actor"]
        for n in db.session.scalars(select(Notification))
        if status[int(n.origin.split(":")[1])] != "cancelled"
        for event in n.data["events"]
    )
    assert sent == standing  # none lost, none twice, no cancelled trigger in a send that goes out
    assert set(db.session.scalars(select(WorkflowDigest.state))) <= {"fired", "dropped"}
    assert "cancelled" in status.values()
