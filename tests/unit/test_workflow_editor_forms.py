"""The workflow editor's pure mapping: a saved definition shown as rows and posted back is the same definition;
the structure buttons; problems placed next to their step."""

from __future__ import annotations

import pytest

from app.console.forms_workflows import (
    StepRow,
    apply_action,
    definition_steps,
    messages_by_step,
    rows_from_steps,
    step_summary,
)
from app.workflows.definitions import STEPS
from app.workflows.demo import DEMO_WORKFLOWS

VARIED = [
    {"kind": "throttle", "limit": 3, "window": 60},
    {"kind": "channel", "channel": "in_app", "template": "a"},
    {"kind": "delay", "until": "09:00"},
    {"kind": "condition", "step": 1, "outcome": "clicked", "within": 600, "otherwise": "skip"},
    {"kind": "condition", "data": {"field": "data.code", "op": "=", "value": "1"}},
    {"kind": "condition", "data": {"field": "data.tags", "op": "in", "value": ["a", 2]}, "negate": True},
    {"kind": "condition", "recipient": {"any": [{"field": "locale", "op": "=", "value": "pt"}]}},
    {"kind": "digest", "window": 300, "max_events": 10},
]


def saved(steps: list[dict]) -> list[dict]:
    """As the store keeps a definition."""
    return [step.model_dump(mode="json", exclude_none=True) for step in STEPS.validate_python(steps)]


@pytest.mark.parametrize(
    "steps", [*(d["steps"] for d in DEMO_WORKFLOWS.values()), VARIED], ids=["digest", "escalation", "varied"]
)
def test_a_saved_definition_round_trips_through_the_editor(steps):
    assert saved(definition_steps(rows_from_steps(saved(steps)))) == saved(steps)


def test_moving_steps_keeps_a_condition_on_the_step_it_named():
    rows = rows_from_steps(saved(VARIED))
    moved = apply_action(apply_action(rows, "up:2"), "remove:3")  # channel first, the delay gone
    assert [r.kind for r in moved][:3] == ["channel", "throttle", "condition"]
    assert definition_steps(moved)[2]["step"] == 0


def test_structure_buttons_ignore_what_they_cannot_do():
    rows = [StepRow(1, "delay"), StepRow(2, "throttle")]
    assert apply_action(rows, "up:1") == rows and apply_action(rows, "down:2") == rows
    assert apply_action(rows, "remove:9") == rows and apply_action(rows, "add:teleport") == rows
    assert [r.id for r in apply_action(rows, "add:digest")] == [1, 2, 3]


def test_problems_sit_next_to_their_step_and_name_its_field():
    rows = [StepRow(7, "delay"), StepRow(3, "escalation")]
    problems = [
        {"field": "steps.0.seconds", "message": "give exactly one of seconds and until"},
        {"field": "steps.1.channels.0.wait", "message": "every channel but the last needs a wait"},
        {"field": "name", "message": "too long"},
    ]
    by_row, invalid, general = messages_by_step(problems, rows)
    assert by_row == {
        7: ["Step 1 (delay) · seconds: give exactly one of seconds and until"],
        3: ["Step 2 (escalation) · channel 1 wait: every channel but the last needs a wait"],
    }
    assert invalid == {"s7-seconds", "s3-c0-wait"} and general == ["name: too long"]


def test_summaries_say_what_a_step_does():
    assert [step_summary(s) for s in saved(VARIED)][:4] == [
        "at most 3 per 60 s",
        "in_app · a",
        "until 09:00 local",
        "step 2 clicked within 600 s, otherwise skip",
    ]
