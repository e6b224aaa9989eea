"""The workflow operations of the /v1 operations table (app/api/operations.py), and the trigger's shapes."""

from __future__ import annotations

from pydantic import RootModel

from app import schemas
from app.api import send_schemas
from app.workflows import schemas as workflow_schemas
from app.workflows.definitions import KEY_PATTERN, WorkflowSave

KEY = {
    "name": "key",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": KEY_PATTERN},
    "description": "The workflow's key (lower case letters, digits, `_`, `.`, `-`). Reading an unknown key is 404.",
}
RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
CANCELLATION_KEY = {
    "name": "key",
    "in": "query",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "The cancellation_key the runs were triggered with",
}


class SendOrTrigger(RootModel[send_schemas.SendRequest | workflow_schemas.WorkflowTrigger]):
    """A send to `user_id` or `topic`; or, when the body has `workflow`, a workflow trigger (202 with
    `workflow_run_id`; an unknown workflow is 404)."""


class SendOrTriggerAccepted(
    RootModel[schemas.NotificationAccepted | send_schemas.RunAccepted | workflow_schemas.WorkflowRunAccepted]
):
    """A notification's id, a run's id (topic), or a workflow run's id (trigger)."""


ERROR = schemas.ErrorResponse
WORKFLOW_OPERATIONS = [
    ("get", "/v1/workflows", "workflows:read", "List workflows", [], None, {"200": workflow_schemas.WorkflowList}),
    (
        "put",
        "/v1/workflows/{key}",
        "workflows:write",
        "Create a workflow or save a new version of it (400 names steps.<index>.<field>)",
        [KEY],
        WorkflowSave,
        {"200": workflow_schemas.WorkflowOut, "201": workflow_schemas.WorkflowOut, "400": ERROR, "409": ERROR},
    ),
    (
        "get",
        "/v1/workflows/{key}",
        "workflows:read",
        "Read a workflow's current version",
        [KEY],
        None,
        {"200": workflow_schemas.WorkflowOut, "404": ERROR},
    ),
    (
        "delete",
        "/v1/workflows/{key}",
        "workflows:write",
        "Delete a workflow, its versions and its runs",
        [KEY],
        None,
        {"204": None, "404": ERROR},
    ),
    (
        "get",
        "/v1/workflow-runs/{run_id}",
        "notifications:read",
        "A workflow run: each step's state, outcome and what it sent",
        [RUN_ID],
        None,
        {"200": workflow_schemas.WorkflowRunOut, "404": ERROR},
    ),
    (
        "post",
        "/v1/workflow-runs/{run_id}/cancel",
        "notifications:send",
        (
            "Cancel a running workflow run (what its steps queued but did not send yet is suppressed). A run waiting"
            " in a digest that has not fired leaves it: its trigger drops out, and if it opened the digest the next"
            " member fires it; a run that fired a digest of several triggers is no longer cancelled"
        ),
        [RUN_ID],
        None,
        {"200": workflow_schemas.CancelResult, "404": ERROR},
    ),
    (
        "post",
        "/v1/workflow-runs/cancel",
        "notifications:send",
        "Cancel every running workflow run triggered with this cancellation_key (digests: as for one run)",
        [CANCELLATION_KEY],
        None,
        {"200": workflow_schemas.CancelResult, "400": ERROR},
    ),
]
