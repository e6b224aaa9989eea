"""Console area: workflows -- each with its runs by status, and per step how many runs entered it and where
they are (waiting, done, skipped, stopped) and what it sent; the editor (every save a new version, audited,
checked exactly as ``PUT /v1/workflows/{key}`` checks a body) and a test run for a chosen recipient."""

from __future__ import annotations

import json

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.accept import UnknownRecipient
from app.api.routes import nul_path
from app.api.workflows import run_json
from app.audiences.filters import OPERATORS
from app.channels import labels
from app.console.audit import record_change
from app.console.blueprint import bp
from app.console.forms_workflows import (
    KIND_LABELS,
    MAX_ESCALATION_CHANNELS,
    TestRunForm,
    WorkflowForm,
    apply_action,
    definition_steps,
    input_name,
    messages_by_step,
    new_row,
    rows_from_form,
    rows_from_steps,
    step_summary,
)
from app.console.templates_editor import content_editor_required, parse_sample_data
from app.extensions import db, htmx
from app.models import Template, Workflow
from app.workflows import store
from app.workflows.schemas import WorkflowTrigger
from app.workflows.trigger import UnknownWorkflow, trigger_workflow


def _workflow_or_404(key: str) -> Workflow:
    workflow = store.find_workflow(key)
    if workflow is None:
        abort(404)
    return workflow


@bp.get("/workflows")
@login_required
def workflows_index():
    workflows = store.list_workflows()
    counts = store.run_counts([w.id for w in workflows])
    return render_template("console/workflows/index.html", workflows=workflows, counts=counts)


@bp.get("/workflows/<string(maxlength=128):key>")
@login_required
def workflow_detail(key: str):
    return _render_detail(_workflow_or_404(key), TestRunForm(formdata=None))


def _render_detail(workflow: Workflow, test_form: TestRunForm, run: dict | None = None, status: int = 200):
    return render_template(
        "console/workflows/detail.html",
        workflow=workflow,
        steps=store.steps_of(workflow),
        counts=store.step_counts(workflow.id),
        runs=store.recent_runs(workflow.id),
        run_counts=store.run_counts([workflow.id])[workflow.id],
        versions=store.versions_of(workflow),
        summary=step_summary,
        test_form=test_form,
        run=run,
    ), status


# -- the editor ------------------------------------------------------------------------------------


def template_keys() -> list[str]:
    return list(db.session.scalars(select(Template.key).order_by(Template.key)))


def _render_editor(form: WorkflowForm, workflow: Workflow | None, rows, problems=(), general=(), status=200):
    by_row, invalid, step_general = messages_by_step(list(problems), rows)
    page = "console/workflows/_editor.html" if htmx else "console/workflows/edit.html"
    return render_template(
        page,
        form=form,
        workflow=workflow,
        rows=rows,
        row_errors=by_row,
        invalid=invalid,
        general=[*general, *step_general],
        definition=json.dumps({"name": form.name.data or "", "steps": definition_steps(rows)}, indent=2),
        kinds=KIND_LABELS,
        channels=labels(),
        templates=template_keys(),
        operators=OPERATORS,
        escalation_slots=range(MAX_ESCALATION_CHANNELS),
        name_of=input_name,
    ), status


def _save(form: WorkflowForm, workflow: Workflow | None, rows):
    """Check the form and the definition; save a new version with its audit entry, or show every problem."""
    valid = form.validate()
    if valid and workflow is None and store.find_workflow(form.key.data):
        form.key.errors.append("A workflow with this key exists already.")
        valid = False
    body = {"name": form.name.data or "", "steps": definition_steps(rows)}
    where = nul_path(body)
    if where is not None:
        definition, problems = None, [{"field": where, "message": "must not contain the character U+0000"}]
    else:
        definition, problems = store.checked_definition(body)
    if form.name.errors:  # said next to the name field already
        problems = [p for p in problems if p["field"] != "name"]
    failed = 200 if htmx else 422  # htmx swaps only 2xx answers
    if not valid or definition is None:
        return _render_editor(form, workflow, rows, problems, status=failed)
    base = form.base_version.data
    if workflow is not None and base.isdigit() and int(base) != workflow.current_version:
        stale = "Someone saved a newer version while you were editing; your changes are still in this form."
        return _render_editor(form, workflow, rows, general=[stale], status=200 if htmx else 409)
    before = None if workflow is None else {"version": workflow.current_version, "steps": store.steps_of(workflow)}
    try:
        saved, created = store.save_workflow(form.key.data, definition, commit=False)
        after = {"version": saved.current_version, "name": saved.name, "steps": store.steps_of(saved)}
        record_change(
            current_user, "workflow.create" if created else "workflow.save", "workflow", saved.key, before, after
        )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        clash = "Saved by someone else at the same time; open the workflow again to see their version."
        return _render_editor(form, workflow, rows, general=[clash], status=200 if htmx else 409)
    flash(f"Saved {saved.key}, version {saved.current_version}.", "info")
    target = url_for("console.workflow_detail", key=saved.key)
    if htmx:
        return "", 204, {"HX-Redirect": target}
    return redirect(target)


def _editor(workflow: Workflow | None):
    """GET shows the editor (a saved version's steps with ``?version=``); POST adds, removes or moves a step
    (htmx swaps the form) or saves."""
    form = WorkflowForm(obj=workflow)
    if request.method == "GET":
        version = request.args.get("version", type=int)
        steps = store.steps_of(workflow, version) if workflow else None
        if workflow and steps is None:
            abort(404, "No such version.")
        rows = rows_from_steps(steps) if steps else [new_row(1, "channel")]
        form.base_version.data = str(workflow.current_version) if workflow else ""
        return _render_editor(form, workflow, rows)
    if workflow is not None:
        form.key.data = workflow.key  # the key is what callers trigger; it never changes
    action = request.form.get("action", "")
    rows = apply_action(rows_from_form(request.form), action)
    if action != "save":
        return _render_editor(form, workflow, rows)
    return _save(form, workflow, rows)


@bp.route("/workflows/new", methods=["GET", "POST"])
@content_editor_required
def workflow_new():
    return _editor(None)


@bp.route("/workflows/<string(maxlength=128):key>/edit", methods=["GET", "POST"])
@content_editor_required
def workflow_edit(key: str):
    return _editor(_workflow_or_404(key))


# -- test run and runs -----------------------------------------------------------------------------


@bp.post("/workflows/<string(maxlength=128):key>/test-run")
@content_editor_required
def workflow_test_run(key: str):
    """Trigger the current version for one recipient, as ``POST /v1/notifications`` with ``workflow`` would."""
    workflow = _workflow_or_404(key)
    form = TestRunForm()
    valid = form.validate()
    data, data_error = parse_sample_data(form.data.data)
    if data_error:
        form.data.errors.append(data_error)
    if nul_path([form.user_id.data, data]) is not None:
        form.data.errors.append("The user id and the data must not contain the character U+0000.")
        valid = False
    if valid and not data_error:
        user_id = form.user_id.data.strip()
        try:
            accepted = trigger_workflow(WorkflowTrigger(workflow=key, user_id=user_id, data=data), None, None)
        except UnknownRecipient:
            form.user_id.errors.append(f"No recipient has user id {user_id!r}.")
        except UnknownWorkflow:
            abort(404)
        else:
            record_change(
                current_user,
                "workflow.test_run",
                "workflow",
                key,
                None,
                {"run_id": accepted.workflow_run_id, "user_id": user_id, "version": workflow.current_version},
            )
            db.session.commit()
            if htmx:
                view = store.run_view(accepted.workflow_run_id)
                return render_template(
                    "console/workflows/_test_run.html", test_form=form, workflow=workflow, run=run_json(view)
                )
            return redirect(url_for("console.workflow_run", run_id=accepted.workflow_run_id))
    if htmx:
        return render_template("console/workflows/_test_run.html", test_form=form, workflow=workflow, run=None)
    return _render_detail(workflow, form, status=422)


@bp.get(f"/workflow-runs/<int(max={2**63 - 1}):run_id>")
@login_required
def workflow_run(run_id: int):
    """One run's steps: state, outcome and what each sent (the data of ``GET /v1/workflow-runs/{id}``)."""
    view = store.run_view(run_id)
    if view is None:
        abort(404)
    page = "console/workflows/_run.html" if htmx else "console/workflows/run.html"
    return render_template(page, run=run_json(view), poll=True)
