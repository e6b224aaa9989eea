"""The workflow editor's forms and the pure mapping between its posted fields and a definition's steps.

Steps are rows the user adds, removes and moves; each row's inputs are named ``s<id>-<field>`` (an escalation's
channels ``s<id>-c<n>-channel`` / ``-wait``). ``definition_steps`` turns the rows into the JSON steps the API takes,
leaving out what is blank so WorkflowSave names it; ``messages_by_step`` puts its problems next to their row.
A condition on an earlier step names that step's row id, so moving steps keeps what it refers to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from app.workflows.definitions import KEY_PATTERN, KINDS, MAX_STEPS

MAX_ESCALATION_CHANNELS = 5
VALUELESS = frozenset({"exists", "not_exists"})
KIND_LABELS = {
    "channel": "Send on a channel",
    "delay": "Delay",
    "digest": "Digest",
    "condition": "Condition",
    "escalation": "Escalation",
    "throttle": "Throttle",
}
FIELD_LABELS = {
    "kind": "kind",
    "channel": "channel",
    "template": "template",
    "seconds": "seconds",
    "until": "until",
    "window": "window",
    "max_events": "max events",
    "key": "digest key",
    "step": "earlier step",
    "outcome": "outcome",
    "within": "within",
    "data": "data filter",
    "recipient": "recipient filter",
    "otherwise": "otherwise",
    "channels": "channels",
    "limit": "limit",
}


class WorkflowForm(FlaskForm):
    key = StringField(
        "Key",
        validators=[
            DataRequired("Give the workflow a key."),
            Regexp(KEY_PATTERN, message="Lower-case letters, digits, _ . - only, starting with a letter or digit."),
        ],
    )
    name = StringField("Name", validators=[DataRequired("Give the workflow a name."), Length(max=255)])
    # The version the editor started from: saving over someone else's newer save is refused.
    base_version = HiddenField()


class TestRunForm(FlaskForm):
    user_id = StringField("Recipient (user id)", validators=[DataRequired("Enter a user id."), Length(max=255)])
    data = TextAreaField("Trigger data (JSON)", default="{}", validators=[Optional(), Length(max=20_000)])


@dataclass(frozen=True)
class StepRow:
    id: int
    kind: str
    values: dict = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.values.get(name, "")


def _fields_of(kind: str) -> tuple[str, ...]:
    common = {
        "channel": ("channel", "template"),
        "delay": ("seconds", "until"),
        "digest": ("window", "max_events", "key"),
        "condition": ("test", "step", "outcome", "within", "negate", "otherwise", "field", "op", "value", "filter"),
        "escalation": ("template", "until"),
        "throttle": ("limit", "window"),
    }[kind]
    if kind == "escalation":
        for n in range(MAX_ESCALATION_CHANNELS):
            common += (f"c{n}-channel", f"c{n}-wait")
    return common


def input_name(row_id: int, name: str) -> str:
    return f"s{row_id}-{name}"


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and len(text) < 7 else None


def rows_from_form(formdata) -> list[StepRow]:
    rows = []
    for row_id in dict.fromkeys(_int(v) for v in formdata.getlist("step_row")):
        kind = formdata.get(input_name(row_id, "kind")) if row_id is not None else None
        if kind not in KINDS:
            continue
        values = {name: (formdata.get(input_name(row_id, name)) or "").strip() for name in _fields_of(kind)}
        rows.append(StepRow(row_id, kind, values))
    return rows[:MAX_STEPS]


def apply_action(rows: list[StepRow], action: str | None) -> list[StepRow]:
    """The structure buttons: ``add:<kind>``, ``remove:<id>``, ``up:<id>``, ``down:<id>``."""
    verb, _, target = (action or "").partition(":")
    if verb == "add" and target in KINDS and len(rows) < MAX_STEPS:
        return [*rows, new_row(max((r.id for r in rows), default=0) + 1, target)]
    ids = [r.id for r in rows]
    number = _int(target)
    if number not in ids:
        return rows
    at = ids.index(number)
    if verb == "remove":
        return rows[:at] + rows[at + 1 :]
    swap_with = at - 1 if verb == "up" else at + 1 if verb == "down" else None
    if swap_with is None or not 0 <= swap_with < len(rows):
        return rows
    moved = list(rows)
    moved[at], moved[swap_with] = moved[swap_with], moved[at]
    return moved


def new_row(row_id: int, kind: str) -> StepRow:
    defaults = {
        "channel": {"channel": "in_app"},
        "condition": {"test": "outcome", "outcome": "read", "otherwise": "stop", "op": "="},
        "escalation": {"until": "delivered"},
    }.get(kind, {})
    return StepRow(row_id, kind, dict(defaults))


# -- rows -> definition ----------------------------------------------------------------------------


def _number(text: str):
    """Digits become an int; anything else stays text, so the schema says what is wrong with it."""
    if not text:
        return None
    return int(text) if text.isdigit() and len(text) < 12 else text


def _json_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def comparison(row: StepRow) -> dict:
    """A condition row's single comparison as a filter (a JSON filter typed in the box wins)."""
    if row.get("filter"):
        return _json_value(row.get("filter"))
    cond = {"field": row.get("field"), "op": row.get("op") or "="}
    if cond["op"] in VALUELESS or not row.get("value"):
        return cond
    if cond["op"] in ("in", "not_in"):
        cond["value"] = [_json_value(part.strip()) for part in row.get("value").split(",") if part.strip()]
    else:
        cond["value"] = _json_value(row.get("value"))
    return cond


def _present(values: dict) -> dict:
    return {name: value for name, value in values.items() if value not in (None, "")}


def step_dict(row: StepRow, index_of: dict[int, int]) -> dict:
    """One row as a definition step; blank inputs are left out so the schema names what is missing."""
    v = row.get
    if row.kind == "channel":
        return _present({"kind": "channel", "channel": v("channel"), "template": v("template")})
    if row.kind == "delay":
        return _present({"kind": "delay", "seconds": _number(v("seconds")), "until": v("until")})
    if row.kind == "digest":
        return _present(
            {"kind": "digest", "window": _number(v("window")), "max_events": _number(v("max_events")), "key": v("key")}
        )
    if row.kind == "throttle":
        return _present({"kind": "throttle", "limit": _number(v("limit")), "window": _number(v("window"))})
    if row.kind == "escalation":
        channels = []
        for n in range(MAX_ESCALATION_CHANNELS):
            if v(f"c{n}-channel"):
                channels.append(_present({"channel": v(f"c{n}-channel"), "wait": _number(v(f"c{n}-wait"))}))
        return _present({"kind": "escalation", "template": v("template"), "channels": channels, "until": v("until")})
    step = {"kind": "condition", "negate": v("negate") == "y", "otherwise": v("otherwise") or "stop"}
    if v("test") in ("data", "recipient"):
        step[v("test")] = comparison(row)
    else:
        target = _int(v("step"))
        step.update(
            _present(
                {
                    # a step that is gone stays out of range, so the definition's check names it
                    "step": index_of.get(target, MAX_STEPS - 1) if target is not None else None,
                    "outcome": v("outcome"),
                    "within": _number(v("within")),
                }
            )
        )
    return step


def definition_steps(rows: list[StepRow]) -> list[dict]:
    index_of = {row.id: index for index, row in enumerate(rows)}
    return [step_dict(row, index_of) for row in rows]


# -- definition -> rows ----------------------------------------------------------------------------


def _display(value) -> str:
    """A filter value as typed back: text stays text unless it would read back as something else ("1", "true")."""
    if isinstance(value, str) and _json_value(value) == value:
        return value
    return json.dumps(value)


def _filter_values(tree: dict) -> dict:
    if isinstance(tree, dict) and set(tree) <= {"field", "op", "value"} and "field" in tree:
        value = tree.get("value")
        shown = (
            ", ".join(_display(v) for v in value)
            if isinstance(value, list)
            else _display(value)
            if value is not None
            else ""
        )
        return {"field": tree["field"], "op": tree.get("op", "="), "value": shown}
    return {"filter": json.dumps(tree), "op": "="}


def rows_from_steps(steps: list[dict]) -> list[StepRow]:
    """The editor's rows for a saved definition (row ids are 1-based positions)."""
    rows = []
    for index, step in enumerate(steps, start=1):
        kind = step["kind"]
        values = {name: str(step[name]) for name in _fields_of(kind) if name in step and step[name] is not None}
        if kind == "escalation":
            for n, entry in enumerate(step.get("channels", [])[:MAX_ESCALATION_CHANNELS]):
                values[f"c{n}-channel"] = entry["channel"]
                values[f"c{n}-wait"] = str(entry.get("wait") or "")
        elif kind == "condition":
            values["negate"] = "y" if step.get("negate") else ""
            values.pop("step", None)
            if "step" in step:
                values.update(test="outcome", step=str(step["step"] + 1))
            for test in ("data", "recipient"):
                if test in step:
                    values.update(test=test, **_filter_values(step[test]))
        rows.append(StepRow(index, kind, values))
    return rows


# -- problems next to their row --------------------------------------------------------------------


def _human(rest: str) -> str:
    parts = rest.split(".")
    if parts[0] == "channels" and len(parts) >= 3 and parts[1].isdigit():
        return f"channel {int(parts[1]) + 1} {parts[2]}"
    return FIELD_LABELS.get(parts[0], rest.replace(".", " "))


def _control(row_id: int, rest: str) -> str:
    parts = rest.split(".")
    if parts[0] == "channels" and len(parts) >= 3 and parts[1].isdigit():
        return input_name(row_id, f"c{parts[1]}-{parts[2]}")
    if parts[0] in ("data", "recipient"):
        return input_name(row_id, "field")
    return input_name(row_id, parts[0])


def messages_by_step(problems: list[dict], rows: list[StepRow]) -> tuple[dict[int, list[str]], set[str], list[str]]:
    """Per row id its messages ("Step 2 · seconds: …"), the inputs they name, and the messages about the whole."""
    by_row: dict[int, list[str]] = {}
    invalid: set[str] = set()
    general = []
    for problem in problems:
        parts = problem["field"].split(".")
        if parts[0] == "steps" and len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) < len(rows):
            index = int(parts[1])
            row = rows[index]
            rest = ".".join(parts[2:]) or "kind"
            by_row.setdefault(row.id, []).append(
                f"Step {index + 1} ({KIND_LABELS[row.kind].lower()}) · {_human(rest)}: {problem['message']}"
            )
            invalid.add(_control(row.id, rest))
        else:
            general.append(f"{problem['field']}: {problem['message']}")
    return by_row, invalid, general


def step_summary(step: dict) -> str:
    """One line describing a saved step, for the detail page and the version list."""
    kind = step.get("kind")
    if kind == "channel":
        return f"{step['channel']} · {step['template']}"
    if kind == "delay":
        return f"until {step['until']} local" if "until" in step else f"{step['seconds']} s"
    if kind == "digest":
        extra = f", or {step['max_events']} events" if step.get("max_events") else ""
        return f"{step['window']} s{extra}" + (f" by {step['key']}" if step.get("key") else "")
    if kind == "throttle":
        return f"at most {step['limit']} per {step['window']} s"
    if kind == "escalation":
        return " → ".join(c["channel"] for c in step["channels"]) + f" · {step['template']} until {step['until']}"
    if kind == "condition":
        if "step" in step:
            within = f" within {step['within']} s" if step.get("within") else ""
            test = f"step {step['step'] + 1} {step['outcome']}{within}"
        else:
            test = "data matches" if "data" in step else "recipient matches"
        return ("not " if step.get("negate") else "") + test + f", otherwise {step.get('otherwise', 'stop')}"
    return ""
