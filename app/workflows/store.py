"""Saving workflows (every save a new, immutable version) and reading them and their runs."""

from __future__ import annotations

import json

from pydantic import ValidationError
from sqlalchemy import delete, func, insert, select

from app.campaigns.planning import missing_variants
from app.extensions import db
from app.models import Recipient, Template, Workflow, WorkflowRun, WorkflowStepRun, WorkflowVersion
from app.models.types import utcnow
from app.workflows import stats
from app.workflows.definitions import WorkflowSave, reference_problems, schema_problems


def template_channels(keys: set[str]) -> dict[str, set[str]]:
    """For each existing template key, the channels its current version can render (in its default locale)."""
    from app.channels import channel_names

    found = {}
    for template in db.session.scalars(select(Template).where(Template.key.in_(keys))):
        version = template.version()
        variants = version.variants if version else {}
        missing = set(missing_variants(variants, list(channel_names()), template.default_locale))
        found[template.key] = set(channel_names()) - missing
    return found


def problems_of(definition: WorkflowSave) -> list[dict]:
    keys = {step.template for step in definition.steps if hasattr(step, "template")}
    channels = template_channels(keys)
    return reference_problems(definition.steps, channels.get)


def checked_definition(body: dict) -> tuple[WorkflowSave | None, list[dict]]:
    """``body`` checked as ``PUT /v1/workflows/{key}`` checks its JSON: the schema, then templates and step
    references; the definition, or None and every problem named ``steps.<index>.<field>``."""
    try:
        definition = WorkflowSave.model_validate_json(json.dumps(body))
    except ValidationError as error:
        return None, schema_problems(error)
    problems = problems_of(definition)
    return (None if problems else definition), problems


def save_workflow(key: str, definition: WorkflowSave, commit: bool = True) -> tuple[Workflow, bool]:
    """A new version of ``key`` (created with version 1 if new). Concurrent saves: the unique (workflow, version)
    pair decides, and the loser of the race is told by an IntegrityError (a 409 in the API)."""
    now = utcnow()
    workflow = db.session.scalar(select(Workflow).where(Workflow.key == key))
    created = workflow is None
    if created:
        workflow = Workflow(key=key, name=definition.name, current_version=0, created_at=now, updated_at=now)
        db.session.add(workflow)
        db.session.flush()
    version = workflow.current_version + 1
    db.session.execute(
        insert(WorkflowVersion).values(
            workflow_id=workflow.id,
            version=version,
            steps=[step.model_dump(mode="json", exclude_none=True) for step in definition.steps],
            created_at=now,
        )
    )
    workflow.current_version, workflow.name, workflow.updated_at = version, definition.name, now
    if commit:
        db.session.commit()
    else:
        db.session.flush()
    return workflow, created


def find_workflow(key: str) -> Workflow | None:
    return db.session.scalar(select(Workflow).where(Workflow.key == key))


def steps_of(workflow: Workflow, version: int | None = None) -> list[dict]:
    return db.session.scalar(
        select(WorkflowVersion.steps).where(
            WorkflowVersion.workflow_id == workflow.id, WorkflowVersion.version == (version or workflow.current_version)
        )
    )


def versions_of(workflow: Workflow) -> list[WorkflowVersion]:
    """Every saved version, newest first."""
    return list(
        db.session.scalars(
            select(WorkflowVersion)
            .where(WorkflowVersion.workflow_id == workflow.id)
            .order_by(WorkflowVersion.version.desc())
        )
    )


def list_workflows() -> list[Workflow]:
    return list(db.session.scalars(select(Workflow).order_by(Workflow.key)))


def delete_workflow(workflow: Workflow) -> None:
    db.session.execute(delete(Workflow).where(Workflow.id == workflow.id))
    db.session.commit()


def run_view(run_id: int) -> dict | None:
    """A run with its workflow, version, user and step rows, for ``GET /v1/workflow-runs/{id}``."""
    found = db.session.execute(
        select(WorkflowRun, Workflow.key, WorkflowVersion.version, WorkflowVersion.steps, Recipient.external_id)
        .join(Workflow, Workflow.id == WorkflowRun.workflow_id)
        .join(WorkflowVersion, WorkflowVersion.id == WorkflowRun.version_id)
        .join(Recipient, Recipient.id == WorkflowRun.recipient_id)
        .where(WorkflowRun.id == run_id)
    ).first()
    if found is None:
        return None
    run, key, version, steps, user_id = found
    rows = {
        row.step_index: row
        for row in db.session.scalars(select(WorkflowStepRun).where(WorkflowStepRun.run_id == run_id))
    }
    return {"run": run, "workflow": key, "version": version, "steps": steps, "user_id": user_id, "rows": rows}


def run_counts(workflow_ids: list[int]) -> dict[int, dict[str, int]]:
    """Runs per workflow and status."""
    counts: dict[int, dict[str, int]] = {w: {} for w in workflow_ids}
    for workflow_id, status, count in db.session.execute(
        select(WorkflowRun.workflow_id, WorkflowRun.status, func.count())
        .where(WorkflowRun.workflow_id.in_(workflow_ids))
        .group_by(WorkflowRun.workflow_id, WorkflowRun.status)
    ):
        counts[workflow_id][status] = count
    return counts


def step_counts(workflow_id: int) -> dict[int, dict[str, int]]:
    """Per step index: how many runs entered it and how many of those are in each state (waiting, done, skipped,
    stopped); ``sent`` counts the notifications it made. Two GROUP BYs, whatever the number of runs."""
    counts: dict[int, dict[str, int]] = {}
    for index, state, count in db.session.execute(
        select(WorkflowStepRun.step_index, WorkflowStepRun.state, func.count())
        .join(WorkflowRun, WorkflowRun.id == WorkflowStepRun.run_id)
        .where(WorkflowRun.workflow_id == workflow_id)
        .group_by(WorkflowStepRun.step_index, WorkflowStepRun.state)
    ):
        row = counts.setdefault(index, {"entered": 0})
        row[state] = count
        row["entered"] += count
    for index, sent in stats.sent_per_step(workflow_id).items():
        counts.setdefault(index, {"entered": 0})["sent"] = sent
    return counts


def recipient_run_ids(recipient_id: int, limit: int = 10) -> list[int]:
    """The recipient's newest runs of any workflow."""
    return list(
        db.session.scalars(
            select(WorkflowRun.id)
            .where(WorkflowRun.recipient_id == recipient_id)
            .order_by(WorkflowRun.id.desc())
            .limit(limit)
        )
    )


def recent_runs(workflow_id: int, limit: int = 20) -> list[tuple]:
    return db.session.execute(
        select(WorkflowRun, Recipient.external_id)
        .join(Recipient, Recipient.id == WorkflowRun.recipient_id)
        .where(WorkflowRun.workflow_id == workflow_id)
        .order_by(WorkflowRun.id.desc())
        .limit(limit)
    ).all()
