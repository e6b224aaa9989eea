"""The pure parts of workflows: definition rules, outcome windows, escalation moves, data filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from app.workflows.data_filter import matches_data
from app.workflows.definitions import WorkflowSave, reference_problems, schema_problems
from app.workflows.facts import (
    DONE,
    EXHAUSTED,
    NEXT,
    WAIT,
    Facts,
    escalation_move,
    outcome_test,
    step_failed_at,
    summarise,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def fields_of(steps) -> list[str]:
    with pytest.raises(ValidationError) as error:
        WorkflowSave.model_validate({"name": "x", "steps": steps})
    return [p["field"] for p in schema_problems(error.value)]


def test_schema_problems_name_the_step_and_field_not_the_union_member():
    assert fields_of([{"kind": "delay"}]) == ["steps.0.seconds"]
    assert fields_of([{"kind": "channel", "channel": "fax", "template": "t"}]) == ["steps.0.channel"]
    assert fields_of([{"kind": "x"}]) == ["steps.0.kind"]
    assert fields_of([{"kind": "condition", "step": 0}]) == ["steps.0.outcome"]


def test_reference_problems_catch_templates_and_conditions_that_look_ahead():
    definition = WorkflowSave.model_validate(
        {
            "name": "x",
            "steps": [
                {"kind": "condition", "step": 1, "outcome": "read"},
                {"kind": "channel", "channel": "sms", "template": "t"},
                {"kind": "channel", "channel": "in_app", "template": "gone"},
                {"kind": "condition", "step": 1, "outcome": "delivered"},
            ],
        }
    )
    problems = reference_problems(definition.steps, {"t": {"in_app"}}.get)
    assert [p["field"] for p in problems] == ["steps.0.step", "steps.1.channel", "steps.2.template"]


def test_an_outcome_within_a_window_waits_until_it_is_known():
    sent = NOW - timedelta(seconds=10)
    assert outcome_test(NOW - timedelta(seconds=5), sent, 60, NOW, 10).holds is True
    waiting = outcome_test(None, sent, 60, NOW, 10)
    assert waiting.holds is None and waiting.look_at == NOW + timedelta(seconds=10)
    assert outcome_test(None, sent, 5, NOW, 10).holds is False
    assert outcome_test(NOW, sent, 5, NOW, 10).holds is False  # it came, but too late
    assert outcome_test(None, sent, None, NOW, 10).holds is False


def test_escalation_moves_on_failure_or_timeout_and_finishes_on_until():
    sent = NOW - timedelta(seconds=5)
    assert escalation_move(Facts(delivered_at=NOW), "delivered", sent, 30, False, NOW, 10)[0] == DONE
    assert escalation_move(Facts(failed_at=NOW), "delivered", sent, 30, False, NOW, 10)[0] == NEXT
    assert escalation_move(Facts(failed_at=NOW), "delivered", sent, 30, True, NOW, 10)[0] == EXHAUSTED
    assert escalation_move(Facts(delivered_at=NOW), "read", sent, 3, False, NOW, 10)[0] == NEXT
    assert escalation_move(Facts(), "read", sent, 30, False, NOW, 10) == (WAIT, NOW + timedelta(seconds=10))


def test_a_step_fails_as_a_whole_not_by_its_last_channel():
    earlier = NOW - timedelta(seconds=30)
    assert step_failed_at([Facts(failed_at=NOW)], None) == NOW  # a channel step
    assert step_failed_at([Facts()], None) is None  # not known yet
    # an escalation: every channel failed -> failed when the last one did
    assert step_failed_at([Facts(failed_at=earlier), Facts(failed_at=NOW)], None) == NOW
    # the first channel came through late, the last failed: the escalation did not fail
    assert step_failed_at([Facts(delivered_at=NOW), Facts(failed_at=NOW)], None) is None
    # out of channels and time with nothing delivered: failed when it ended so
    assert step_failed_at([Facts(failed_at=earlier), Facts()], NOW) == NOW
    assert step_failed_at([Facts(failed_at=earlier), Facts()], None) is None  # the last one is still on its way
    assert step_failed_at([], NOW) is None


def test_a_notification_fails_when_every_delivery_ended_undelivered():
    assert summarise("routed", NOW, None, None, [("SUPPRESSED", None, None, NOW)]).failed_at == NOW
    assert summarise("routed", NOW, None, None, [("PENDING", None, None, NOW)]).failed_at is None
    assert summarise("routed", NOW, None, None, [("DISPATCHED", None, NOW, NOW)]).delivered_at == NOW
    assert summarise("accepted", NOW, None, None, []).failed_at is None


def test_data_filters_mean_what_audience_filters_mean():
    data = {"amount": 120, "plan": "pro", "flag": True}
    assert matches_data({"field": "data.amount", "op": ">", "value": 100}, data)
    assert not matches_data({"field": "data.plan", "op": ">", "value": 1}, data)
    assert matches_data({"all": [{"field": "data.plan", "op": "in", "value": ["pro", "team"]}]}, data)
    assert matches_data({"field": "data.missing", "op": "not_exists"}, data)
    assert matches_data({"field": "data.flag", "op": "=", "value": True}, data)
    assert not matches_data({"field": "data.amount", "op": "=", "value": "120"}, data)
