"""What a step's functions return, and the states of a step's row (shared by app/workflows/steps.py and digest.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app.models import WorkflowRun

WAITING, DONE, SKIPPED, STOPPED = "waiting", "done", "skipped", "stopped"


@dataclass(frozen=True)
class Context:
    run: WorkflowRun
    index: int
    step: object
    token: str
    now: datetime
    definition: list = field(default_factory=list)  # the run's steps, for a step that looks at the ones after it


@dataclass(frozen=True)
class Next:
    skip: int = 0


@dataclass(frozen=True)
class Wait:
    at: datetime


@dataclass(frozen=True)
class Stop:
    reason: str


@dataclass
class Start:
    """A step's first act: its row's fields and the notifications stored with the claim."""

    state: str
    outcome: str | None = None
    sent: list = field(default_factory=list)
    notifications: list = field(default_factory=list)
    wait_until: datetime | None = None
    detail: str | None = None
    phase: int = 0
    digest_id: int | None = None
