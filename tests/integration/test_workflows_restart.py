"""A workflow's delay outlives a restart of every process: worker and scheduler SIGKILLed, Redis emptied (it
keeps nothing on disk), new ones started -- the scheduler finds the wait in the database and the run finishes."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Notification, WorkflowRun, WorkflowStepRun
from tests.conftest import kill_worker, start_worker
from tests.factories import make_recipient, make_template
from tests.integration.test_workflows import lose_every_job
from tests.processes import start_scheduler


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_delay_survives_a_restart_of_every_process(api, test_env, tmp_path):
    make_template("hello", {"en": {"in_app": {"title": "Hello", "body": "b"}}})
    steps = [
        {"kind": "channel", "channel": "in_app", "template": "hello"},
        {"kind": "delay", "seconds": 4},
        {"kind": "channel", "channel": "in_app", "template": "hello"},
    ]
    assert api.put("/v1/workflows/flow", json={"name": "Flow", "steps": steps}).status_code == 201
    env = {**os.environ, **test_env, "HERALD_WORKFLOW_LEASE_SECONDS": "10"}
    processes = [start_worker([], env), start_scheduler(env, tmp_path / "scheduler-1.log")]
    try:
        response = api.post("/v1/notifications", json={"workflow": "flow", "user_id": make_recipient().external_id})
        run_id = response.json["workflow_run_id"]

        def waiting() -> bool:
            """The delay is recorded and the run waits for its end (not merely leased by a worker)."""
            run = db.session.get(WorkflowRun, run_id)
            row = db.session.scalar(
                select(WorkflowStepRun).where(WorkflowStepRun.run_id == run_id, WorkflowStepRun.step_index == 1)
            )
            return row is not None and run.next_at == row.wait_until and run.next_at > datetime.now(UTC)

        wait_for(waiting, 30, "the run to wait in its delay")
        for process in processes:
            kill_worker(process)  # SIGKILL to each process group
        lose_every_job()  # and Redis comes back empty: every queued and scheduled job is gone
        processes = [start_worker([], env), start_scheduler(env, tmp_path / "scheduler-2.log")]
        try:
            wait_for(lambda: db.session.get(WorkflowRun, run_id).status == "completed", 60, "the run to complete")
        except AssertionError:
            run = db.session.get(WorkflowRun, run_id)
            log = (tmp_path / "scheduler-2.log").read_text()[-3000:]
            raise AssertionError(f"run {run.status} at step {run.current_step}, next_at {run.next_at}\n{log}") from None
    finally:
        for process in processes:
            kill_worker(process)
    origins = sorted(db.session.scalars(select(Notification.origin)))
    assert origins == [f"workflow:{run_id}:0", f"workflow:{run_id}:2"]
