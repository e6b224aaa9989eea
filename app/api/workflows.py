"""/v1/workflows (definitions, every save a version) and /v1/workflow-runs (read and cancel a run).

A workflow is triggered through ``POST /v1/notifications`` with ``"workflow": "<key>"`` (app/api/routes.py).
"""

from __future__ import annotations

import re

from flask import abort, jsonify, request
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.api.blueprint import bp
from app.api.routes import BadRequest, dump, nul_path
from app.extensions import db
from app.models import Delivery
from app.workflows import schemas, store, trigger
from app.workflows.definitions import KEY_PATTERN, WorkflowSave, schema_problems

WORKFLOW_KEY = "<string(maxlength=128):key>"
RUN_ID = f"<int(max={2**63 - 1}):run_id>"


def _definition() -> WorkflowSave:
    """The body, checked as the document states: its schema first, then templates and step references."""
    if not request.is_json:
        raise BadRequest([{"field": "(body)", "message": "send a JSON object with Content-Type: application/json"}])
    raw = request.get_data()
    try:
        definition = WorkflowSave.model_validate_json(raw)
    except ValidationError as error:
        if any(not e["loc"] and e["type"] in ("json_invalid", "model_type") for e in error.errors()):
            raise BadRequest([{"field": "(body)", "message": "the body must be a JSON object"}]) from None
        raise BadRequest(schema_problems(error), "the workflow definition is invalid") from None
    where = nul_path(request.get_json())
    if where is not None:
        raise BadRequest([{"field": where, "message": "must not contain the character U+0000"}])
    problems = store.problems_of(definition)
    if problems:
        raise BadRequest(problems, "the workflow definition is invalid")
    return definition


def workflow_json(workflow) -> dict:
    return dump(
        schemas.WorkflowOut,
        key=workflow.key,
        name=workflow.name,
        version=workflow.current_version,
        steps=store.steps_of(workflow),
        created_at=workflow.created_at,
        updated_at=workflow.updated_at,
    )


def _workflow_or_404(key: str):
    workflow = store.find_workflow(key) if re.fullmatch(KEY_PATTERN, key) else None
    if workflow is None:
        abort(404, f"no workflow with key {key!r}; create it with PUT /v1/workflows/{{key}}")
    return workflow


@bp.get("/workflows")
def list_workflows():
    return jsonify(dump(schemas.WorkflowList, items=[workflow_json(w) for w in store.list_workflows()]))


@bp.put(f"/workflows/{WORKFLOW_KEY}")
def put_workflow(key: str):
    if not re.fullmatch(KEY_PATTERN, key):
        raise BadRequest([{"field": "key", "message": f"a workflow key matches {KEY_PATTERN}"}])
    definition = _definition()
    try:
        workflow, created = store.save_workflow(key, definition)
    except IntegrityError:
        db.session.rollback()
        return jsonify({"error": {"code": "conflict", "message": "saved by someone else at the same time"}}), 409
    return jsonify(workflow_json(workflow)), (201 if created else 200)


@bp.get(f"/workflows/{WORKFLOW_KEY}")
def get_workflow(key: str):
    return jsonify(workflow_json(_workflow_or_404(key)))


@bp.delete(f"/workflows/{WORKFLOW_KEY}")
def delete_workflow(key: str):
    store.delete_workflow(_workflow_or_404(key))
    return "", 204


def _step_json(index: int, step: dict, row, statuses: dict) -> dict:
    if row is None:
        return {"index": index, "kind": step["kind"], "state": "pending"}
    sent = [{**entry, "status": statuses.get(entry["notification_id"])} for entry in row.sent or []]
    return {
        "index": index,
        "kind": row.kind,
        "state": row.state,
        "outcome": row.outcome,
        "detail": row.detail,
        "wait_until": row.wait_until,
        "sent": sent,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }


def run_json(view: dict) -> dict:
    run, rows = view["run"], view["rows"]
    ids = [entry["notification_id"] for row in rows.values() for entry in row.sent or []]
    found = db.session.execute(
        select(Delivery.notification_id, Delivery.status).where(Delivery.notification_id.in_(ids))
    )
    statuses = dict(found.all())
    return dump(
        schemas.WorkflowRunOut,
        id=run.id,
        workflow=view["workflow"],
        version=view["version"],
        user_id=view["user_id"],
        status=run.status,
        reason=run.reason,
        current_step=run.current_step,
        next_at=run.next_at,
        data=run.data or {},
        cancellation_key=run.cancellation_key,
        created_at=run.created_at,
        finished_at=run.finished_at,
        steps=[_step_json(i, step, rows.get(i), statuses) for i, step in enumerate(view["steps"])],
    )


def _run_or_404(run_id: int) -> dict:
    view = store.run_view(run_id)
    if view is None:
        abort(404, f"workflow run {run_id} does not exist")
    return view


@bp.get(f"/workflow-runs/{RUN_ID}")
def get_workflow_run(run_id: int):
    return jsonify(run_json(_run_or_404(run_id)))


@bp.post(f"/workflow-runs/{RUN_ID}/cancel")
def cancel_workflow_run(run_id: int):
    _run_or_404(run_id)
    return jsonify(dump(schemas.CancelResult, cancelled=trigger.cancel_run(run_id)))


@bp.post("/workflow-runs/cancel")
def cancel_workflow_runs_by_key():
    key = request.args.get("key", "")
    if not 1 <= len(key) <= 255 or "\x00" in key:
        raise BadRequest([{"field": "key", "message": "give the cancellation_key: 1 to 255 characters"}])
    return jsonify(dump(schemas.CancelResult, cancelled=trigger.cancel_by_key(key)))
