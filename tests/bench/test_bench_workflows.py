"""What a workflow costs over a plain send: a one-step in-app workflow (trigger + advance: claim row, notification,
route) against the same notification accepted and routed as an API send (the floor), alternating rounds."""

from __future__ import annotations

import time

import pytest

from app.accept import accept_notification
from app.pipeline.route import route_notification
from app.schemas import NotificationCreate
from app.workflows.definitions import WorkflowSave
from app.workflows.engine import advance
from app.workflows.schemas import WorkflowTrigger
from app.workflows.store import save_workflow
from app.workflows.trigger import trigger_workflow
from tests.factories import make_recipient, make_template

ROUNDS, PER_ROUND = 4, 100


@pytest.mark.bench
def test_a_one_step_workflow_against_a_plain_send(app):
    make_template("hello", {"en": {"in_app": {"title": "Hello", "body": "b"}}})
    steps = [{"kind": "channel", "channel": "in_app", "template": "hello"}]
    save_workflow("one", WorkflowSave.model_validate({"name": "One", "steps": steps}))
    users = [make_recipient().external_id for _ in range(PER_ROUND)]
    workflow_times, send_times = [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for user in users:
            advance(trigger_workflow(WorkflowTrigger(workflow="one", user_id=user), None, None).workflow_run_id)
        workflow_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        for user in users:
            payload = NotificationCreate(user_id=user, type="transactional", template="hello", channels=["in_app"])
            route_notification(accept_notification(payload, None, None).id)
        send_times.append(time.perf_counter() - started)
    workflow_rate = PER_ROUND / min(workflow_times)
    send_rate = PER_ROUND / min(send_times)
    print(
        f"one-step workflow {workflow_rate:.0f}/s, plain send (floor) {send_rate:.0f}/s, "
        f"ratio {workflow_rate / send_rate:.2f} (best of {ROUNDS} alternating rounds of {PER_ROUND})"
    )
    assert workflow_rate > 0
