"""RQ entry points of workflows (app/workflows/engine.py): advance one run; re-drive the due ones."""

from __future__ import annotations

from app.models.types import utcnow
from app.workflows.engine import advance, redrive_due


def advance_run(run_id: int) -> str:
    return advance(run_id)


def redrive_due_runs() -> int:
    return redrive_due(utcnow())
