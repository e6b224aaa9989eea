"""Console area: workflows -- each with its runs by status, and per step how many runs entered it and where
they are (waiting, done, skipped, stopped) and what it sent."""

from __future__ import annotations

from flask import abort, render_template
from flask_login import login_required

from app.console.blueprint import bp
from app.workflows import store


@bp.get("/workflows")
@login_required
def workflows_index():
    workflows = store.list_workflows()
    counts = store.run_counts([w.id for w in workflows])
    return render_template("console/workflows/index.html", workflows=workflows, counts=counts)


@bp.get("/workflows/<string(maxlength=128):key>")
@login_required
def workflow_detail(key: str):
    workflow = store.find_workflow(key)
    if workflow is None:
        abort(404)
    return render_template(
        "console/workflows/detail.html",
        workflow=workflow,
        steps=store.steps_of(workflow),
        counts=store.step_counts(workflow.id),
        runs=store.recent_runs(workflow.id),
        run_counts=store.run_counts([workflow.id])[workflow.id],
    )
