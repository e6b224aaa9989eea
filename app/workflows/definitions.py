"""What a workflow definition may say, and every problem with one, named by step index and field (pure).

A definition is an ordered list of steps. Runs go forward only (a step may skip the next one, never jump back),
so a definition has no cycles; a condition may only look at the outcome of a step before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.audiences.filters import validate_filter
from app.schemas import Channel, Strict

KINDS = ("channel", "delay", "condition", "escalation", "throttle", "digest")
OUTCOMES = ("delivered", "read", "clicked", "failed")
MAX_STEPS = 50
MAX_WAIT = 30 * 24 * 3600
LOCAL_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,127}$"

Seconds = Annotated[int, Field(ge=1, le=MAX_WAIT, description=f"Whole seconds, 1 to {MAX_WAIT:,} (30 days)")]
TemplateKey = Annotated[str, Field(min_length=1, max_length=128, description="A template's key")]


class ChannelStep(Strict):
    """Send the template on one channel: routing, preferences, hard stop, suppression, quiet hours and frequency
    caps apply exactly as for a plain send. The template must have content for the channel."""

    kind: Literal["channel"]
    channel: Channel
    template: TemplateKey


class DelayStep(Strict):
    """Wait ``seconds``, or until the next ``until`` ("HH:MM") in the recipient's time zone (UTC without one)."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["seconds"]}, {"required": ["until"]}]})

    kind: Literal["delay"]
    seconds: Seconds | None = None
    until: str | None = Field(None, pattern=LOCAL_TIME_PATTERN, description="Local time HH:MM (24 h)")

    @model_validator(mode="after")
    def _one_of(self) -> DelayStep:
        if (self.seconds is None) == (self.until is None):
            raise PydanticCustomError("delay_one_of", "give exactly one of seconds and until", {"field": "seconds"})
        return self


class ConditionStep(Strict):
    """Continue when the test holds (or, with ``negate``, when it does not); otherwise ``stop`` the run or
    ``skip`` the next step. The test is exactly one of: an earlier step's outcome (``step`` + ``outcome``,
    optionally ``within`` seconds of its send -- the run waits until it is known), the trigger's ``data``
    (the audience filter language with fields ``data.<name>``), or the ``recipient`` (an audience filter)."""

    kind: Literal["condition"]
    step: int | None = Field(None, ge=0, lt=MAX_STEPS, description="Index of an earlier channel or escalation step")
    outcome: Literal["delivered", "read", "clicked", "failed"] | None = None
    within: Seconds | None = Field(None, description="With step: the outcome must come within this long of the send")
    data: dict[str, Any] | None = Field(None, description="A filter over the trigger's data: fields data.<name>")
    recipient: dict[str, Any] | None = Field(None, description="An audience filter the recipient must match")
    negate: bool = False
    otherwise: Literal["stop", "skip"] = "stop"

    @model_validator(mode="after")
    def _one_test(self) -> ConditionStep:
        given = [name for name in ("step", "data", "recipient") if getattr(self, name) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "condition_one_test", "give exactly one of step (with outcome), data and recipient", {"field": "step"}
            )
        if (self.step is None) != (self.outcome is None):
            raise PydanticCustomError("condition_outcome", "step and outcome go together", {"field": "outcome"})
        if self.within is not None and self.step is None:
            raise PydanticCustomError("condition_within", "within goes with step and outcome", {"field": "within"})
        return self

    @field_validator("recipient")
    @classmethod
    def _recipient_filter(cls, value):
        if value is not None:
            problems = validate_filter(value, "recipient")
            if problems:
                raise ValueError(problems[0])
        return value

    @field_validator("data")
    @classmethod
    def _data_filter(cls, value):
        if value is not None:
            problems = validate_filter(as_attribute_filter(value), "data")
            if problems:
                where, _, message = problems[0].partition(": ")
                if "(not data)" in message:
                    message = "a data filter compares fields named data.<name>"
                raise ValueError(f"{where}: {message.replace('attributes.', 'data.')}")
        return value


class EscalationChannel(Strict):
    channel: Channel
    wait: Seconds | None = Field(
        None, description="How long to wait for `until` before the next channel; every channel but the last needs it"
    )


class EscalationStep(Strict):
    """Try channels in order with one template: move to the next when the previous failed permanently (or was
    suppressed), ran out of retries, or did not reach ``until`` within its ``wait``."""

    kind: Literal["escalation"]
    template: TemplateKey
    channels: list[EscalationChannel] = Field(min_length=2, max_length=5, description="Each channel at most once")
    until: Literal["delivered", "read"] = "delivered"

    @model_validator(mode="after")
    def _waits(self) -> EscalationStep:
        names = [c.channel for c in self.channels]
        if len(set(names)) != len(names):
            raise PydanticCustomError("escalation_unique", "each channel may appear once", {"field": "channels"})
        for index, entry in enumerate(self.channels[:-1]):
            if entry.wait is None:
                raise PydanticCustomError(
                    "escalation_wait", "every channel but the last needs a wait", {"field": f"channels.{index}.wait"}
                )
        return self


class ThrottleStep(Strict):
    """At most ``limit`` runs of this workflow per recipient in any ``window`` seconds; the rest stop here."""

    kind: Literal["throttle"]
    limit: int = Field(ge=1, le=1000)
    window: Seconds


class DigestStep(Strict):
    """Collect this workflow's triggers for the recipient that share ``key`` (a data field; without one, all of
    them) for ``window`` seconds from the first, or until ``max_events`` have arrived; then the run that opened
    the digest continues once, its later templates seeing ``data.events`` (each trigger's data, oldest first),
    ``data.count`` and ``data.actors`` (the first three distinct ``data.actor`` values). The other runs stop
    here (reason ``digested``). Every trigger lands in exactly one digest. A recipient's digest frequency for the
    category of the first sending step after it (``digests`` in their preferences) applies: ``off`` = not held,
    ``hourly`` / ``daily`` = at least an hour / until their next 09:00, never shorter than ``window``."""

    kind: Literal["digest"]
    window: Seconds
    max_events: int | None = Field(None, ge=2, le=10_000, description="Close early once this many have arrived")
    key: str | None = Field(None, pattern=r"^data\.[A-Za-z0-9_-]{1,100}$", description="e.g. data.post_id")


Step = Annotated[
    ChannelStep | DelayStep | ConditionStep | EscalationStep | ThrottleStep | DigestStep, Field(discriminator="kind")
]
STEPS = TypeAdapter(list[Step])


class WorkflowSave(Strict):
    """``PUT /v1/workflows/{key}``: every save is a new version; runs keep the version they started with.
    Each template must exist and have content for each channel it is sent on; a condition's ``step`` must be an
    earlier channel or escalation step. Problems are 400 naming ``steps.<index>.<field>``."""

    name: str = Field(min_length=1, max_length=255)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)


def as_attribute_filter(tree):
    """A data filter spelled as an attribute filter, so the audience language's validator checks it."""
    if isinstance(tree, dict):
        return {
            key: (
                "attributes." + value[len("data.") :]
                if key in ("field", "field_value") and isinstance(value, str) and value.startswith("data.")
                else "(not data) " + value
                if key in ("field", "field_value") and isinstance(value, str)
                else as_attribute_filter(value)
            )
            for key, value in tree.items()
        }
    if isinstance(tree, list):
        return [as_attribute_filter(item) for item in tree]
    return tree


def error_field(error: dict) -> str:
    """``steps.2.delay.seconds`` (pydantic names the union member) → ``steps.2.seconds``."""
    parts = [str(part) for part in error["loc"]]
    if len(parts) >= 3 and parts[0] == "steps" and parts[2] in KINDS:
        del parts[2]
    if error["type"].startswith("union_tag"):
        parts.append("kind")
    named = (error.get("ctx") or {}).get("field")
    if named:
        parts.append(named)
    return ".".join(parts) or "(body)"


def schema_problems(error: ValidationError) -> list[dict]:
    return [{"field": error_field(e), "message": e["msg"].removeprefix("Value error, ")} for e in error.errors()]


def reference_problems(steps: list, channels_of: Callable[[str], set[str] | None]) -> list[dict]:
    """What only the database can say: unknown templates, templates without a step's channel, and conditions on
    a step that is not an earlier sending step. ``channels_of(key)`` is the channels a template has content for,
    or None for an unknown key."""
    problems = []
    for index, step in enumerate(steps):
        if step.kind in ("channel", "escalation"):
            have = channels_of(step.template)
            if have is None:
                problems.append({"field": f"steps.{index}.template", "message": f"no template {step.template!r}"})
                continue
            wanted = [(f"steps.{index}.channel", step.channel)] if step.kind == "channel" else []
            wanted += [
                (f"steps.{index}.channels.{n}.channel", c.channel) for n, c in enumerate(getattr(step, "channels", []))
            ]
            for field, channel in wanted:
                if channel not in have:
                    problems.append(
                        {"field": field, "message": f"template {step.template!r} has no content for {channel}"}
                    )
        elif step.kind == "condition" and step.step is not None:
            if step.step >= index:
                problems.append({"field": f"steps.{index}.step", "message": "must name a step before this one"})
            elif steps[step.step].kind not in ("channel", "escalation"):
                problems.append(
                    {
                        "field": f"steps.{index}.step",
                        "message": "must name a channel or escalation step (one that sends)",
                    }
                )
    return problems
