"""A condition on ``failed`` of an escalation means the escalation failed as a whole, not its last channel."""

from __future__ import annotations

from jobs.workflows import redrive_due_runs
from tests.factories import make_recipient, make_template
from tests.integration.test_workflows import _wait_until_due, drain, origins, run_of, save, trigger

ALERT = {"en": {"sms": {"text": "Alert"}, "in_app": {"title": "Alert", "body": "b"}}}


def test_a_condition_on_failed_of_an_escalation_is_false_when_an_earlier_channel_came_through(api, run_jobs):
    make_template("alert", ALERT)
    save(
        api,
        steps=[
            {
                "kind": "escalation",
                "template": "alert",
                "until": "read",
                "channels": [{"channel": "in_app", "wait": 1}, {"channel": "sms"}],
            },
            {"kind": "condition", "step": 0, "outcome": "failed"},
            {"kind": "channel", "channel": "in_app", "template": "alert"},
        ],
    )
    run = run_of(trigger(api, make_recipient(phone=None).external_id))  # in-app delivered, unread; SMS suppressed
    run_jobs()
    _wait_until_due(run.id)
    redrive_due_runs()
    drain(run_jobs)
    view = api.get(f"/v1/workflow-runs/{run.id}").json
    assert [s["channel"] for s in view["steps"][0]["sent"]] == ["in_app", "sms"], view
    # the last channel failed, but the escalation delivered: the condition does not hold and the run stops
    assert (view["status"], view["steps"][1]["state"]) == ("stopped", "stopped"), view
    assert len(origins(run.id)) == 2
