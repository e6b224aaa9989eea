"""The demo's workflows (``make run``): the two the product's documents ask for first."""

from __future__ import annotations

from app.workflows.definitions import WorkflowSave
from app.workflows.store import save_workflow

DEMO_WORKFLOWS = {
    "comment-digest": {
        "name": "Comment digest",
        "steps": [
            {"kind": "channel", "channel": "in_app", "template": "comment"},
            {"kind": "digest", "window": 600, "key": "data.post_id"},
            {"kind": "condition", "step": 0, "outcome": "read", "negate": True},
            {"kind": "channel", "channel": "email", "template": "comment_digest"},
        ],
    },
    "security-alert": {
        "name": "Security alert",
        "steps": [
            {
                "kind": "escalation",
                "template": "security_alert",
                "until": "delivered",
                "channels": [{"channel": "push", "wait": 30}, {"channel": "sms", "wait": 300}, {"channel": "email"}],
            }
        ],
    },
}


def add_demo_workflows() -> None:
    """Stored in the demo's transaction (the caller commits)."""
    for key, definition in DEMO_WORKFLOWS.items():
        save_workflow(key, WorkflowSave.model_validate(definition), commit=False)
