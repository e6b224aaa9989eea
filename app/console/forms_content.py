"""Forms of the content areas (templates, audiences, imports) and the pure mapping of form data.

The fixed fields are WTForms (CSRF, errors next to the field). The parts
whose shape the user changes -- a template's locales and channel variants,
an audience's rows and groups -- are read from the posted form by the pure
functions below, so the same code serves a plain submit and an htmx post.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from wtforms import HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from app.audiences.filters import COLUMNS
from app.audiences.imports import parse_number
from app.channels import labels, optional_fields, template_label, variant_channels
from app.delivery.constants import NOTIFICATION_TYPES
from app.delivery.rendering import CHANNEL_FIELDS
from app.schemas import CATEGORY_PATTERN, LOCALE_PATTERN

# The channels the editor shows; web push falls back to the push variant (rendering.pick_variant), so
# that variant's label names both ("Mobile push & Web push").
EDITOR_CHANNELS = variant_channels()
CHANNEL_LABELS = {**labels(), **{channel: template_label(channel) for channel in EDITOR_CHANNELS}}
OPTIONAL_FIELDS = optional_fields()
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,127}$"
MAX_LOCALES = 30
_LOCALE = re.compile(LOCALE_PATTERN)


# -- templates ---------------------------------------------------------------------------------


class TemplateForm(FlaskForm):
    key = StringField(
        "Key",
        validators=[
            DataRequired("Give the template a key."),
            Regexp(KEY_PATTERN, message="Lower-case letters, digits, - and _ only, starting with a letter or digit."),
        ],
    )
    name = StringField("Name", validators=[DataRequired("Give the template a name."), Length(max=255)])
    category = StringField(
        "Category",
        default="general",
        validators=[
            DataRequired("Give the template a category."),
            Regexp(CATEGORY_PATTERN, message="Lower-case letters, digits, ., - and _ only."),
        ],
    )
    type = SelectField("Type", choices=[(t, t) for t in NOTIFICATION_TYPES], default="marketing")
    default_locale = StringField(
        "Default locale",
        default="en",
        validators=[
            DataRequired("Give a default locale."),
            Regexp(LOCALE_PATTERN, message="A locale like en or pt-BR."),
        ],
    )
    # The version the editor started from: saving over someone else's newer save is refused.
    base_version = HiddenField()
    preview_user = StringField("Preview for user id", validators=[Optional(), Length(max=255)])
    sample_data = TextAreaField("Sample data (JSON)", default="{}", validators=[Optional(), Length(max=20_000)])


def field_name(locale: str, channel: str, name: str) -> str:
    """The form input holding one variant field, e.g. ``v-pt-BR-sms-text``."""
    return f"v-{locale}-{channel}-{name}"


def editor_fields() -> list[tuple[str, str]]:
    return [(channel, name) for channel in EDITOR_CHANNELS for name in CHANNEL_FIELDS[channel]]


def _text(value: str | None) -> str:
    # Browsers post CRLF; line numbers and diffs want one kind of newline.
    return (value or "").replace("\r\n", "\n").replace("\r", "\n")


def locales_from_form(formdata, default_locale: str) -> tuple[list[str], str | None]:
    """The locales being edited after the add/remove buttons, and a message if the new one is refused."""
    locales = list(dict.fromkeys(v for v in formdata.getlist("locales") if _LOCALE.fullmatch(v)))
    message = None
    removed = formdata.get("remove_locale")
    if removed and removed != default_locale:
        locales = [loc for loc in locales if loc != removed]
    if formdata.get("action") == "add_locale":
        new = (formdata.get("new_locale") or "").strip()
        if not _LOCALE.fullmatch(new):
            message = "A locale looks like en or pt-BR."
        elif new in locales:
            message = f"{new} is already there."
        elif len(locales) >= MAX_LOCALES:
            message = f"At most {MAX_LOCALES} locales."
        else:
            locales.append(new)
    if _LOCALE.fullmatch(default_locale or "") and default_locale not in locales:
        locales.insert(0, default_locale)
    return locales, message


def variants_from_form(formdata, locales: list[str]) -> dict:
    """locale -> channel -> fields, keeping only channels with at least one non-blank field."""
    variants: dict = {}
    for locale in locales:
        channels = {}
        for channel in EDITOR_CHANNELS:
            values = {name: _text(formdata.get(field_name(locale, channel, name))) for name in CHANNEL_FIELDS[channel]}
            if any(v.strip() for v in values.values()):
                channels[channel] = {k: v for k, v in values.items() if v.strip()}
        variants[locale] = channels
    return variants


# -- audiences ---------------------------------------------------------------------------------

SPECIAL_FIELDS = ("reachable", "last_seen_at")
FIELD_SUGGESTIONS = (*COLUMNS, *SPECIAL_FIELDS, "attributes.")
OPERATOR_LABELS = {
    "=": "=",
    "!=": "≠",
    "<": "<",
    "<=": "≤",
    ">": ">",
    ">=": "≥",
    "in": "in",
    "not_in": "not in",
    "exists": "exists",
    "not_exists": "does not exist",
    "within_days": "within the last N days",
}
VALUELESS = frozenset({"exists", "not_exists"})
MAX_ROWS = 100
MAX_GROUPS = 20


class AudienceForm(FlaskForm):
    name = StringField("Audience name", validators=[Optional(), Length(max=255)])


class ImportForm(FlaskForm):
    file = FileField(
        "CSV file",
        validators=[
            FileRequired("Choose a CSV file."),
            FileAllowed(["csv", "txt"], "Upload a .csv file."),
        ],
    )


@dataclass(frozen=True)
class Row:
    id: int
    group: int  # 0: the top level; otherwise a Group id
    field: str = ""
    op: str = "="
    kind: str = "value"  # "value", or "attribute" to compare with another attribute
    value: str = ""


@dataclass(frozen=True)
class Group:
    id: int
    mode: str = "any"


@dataclass(frozen=True)
class Builder:
    """The filter builder's rows as the user sees them: a top-level group with rows and one level of sub-groups."""

    mode: str = "all"
    rows: tuple[Row, ...] = ()
    groups: tuple[Group, ...] = ()
    messages: dict = field(default_factory=dict, compare=False)

    def rows_of(self, group: int) -> list[Row]:
        return [row for row in self.rows if row.group == group]


def _mode(value: str | None, default: str) -> str:
    return value if value in ("all", "any") else default


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 6 else None


def builder_from_form(formdata) -> Builder:
    groups = []
    for gid in dict.fromkeys(_int(v) for v in formdata.getlist("group")):
        if gid:
            groups.append(Group(gid, _mode(formdata.get(f"g{gid}-mode"), "any")))
    known = {0} | {g.id for g in groups}
    rows = []
    for rid in dict.fromkeys(_int(v) for v in formdata.getlist("row")):
        if rid is None:
            continue
        group = _int(formdata.get(f"r{rid}-group")) or 0
        p = f"r{rid}-"
        rows.append(
            Row(
                rid,
                group if group in known else 0,
                (formdata.get(p + "field") or "").strip(),
                formdata.get(p + "op") or "=",
                "attribute" if formdata.get(p + "kind") == "attribute" else "value",
                (formdata.get(p + "value") or "").strip(),
            )
        )
    return Builder(_mode(formdata.get("mode"), "all"), tuple(rows[:MAX_ROWS]), tuple(groups[:MAX_GROUPS]))


def apply_action(builder: Builder, action: str | None) -> Builder:
    """The add/remove buttons: ``add_row:<group>``, ``add_group``, ``remove_row:<id>``, ``remove_group:<id>``."""
    verb, _, target = (action or "").partition(":")
    number = _int(target)
    next_row = max((r.id for r in builder.rows), default=0) + 1
    if verb == "add_row" and number is not None and len(builder.rows) < MAX_ROWS:
        if number == 0 or any(g.id == number for g in builder.groups):
            return replace(builder, rows=(*builder.rows, Row(next_row, number)))
    if verb == "add_group" and len(builder.groups) < MAX_GROUPS and len(builder.rows) < MAX_ROWS:
        gid = max((g.id for g in builder.groups), default=0) + 1
        return replace(builder, groups=(*builder.groups, Group(gid)), rows=(*builder.rows, Row(next_row, gid)))
    if verb == "remove_row" and number is not None:
        return replace(builder, rows=tuple(r for r in builder.rows if r.id != number))
    if verb == "remove_group" and number:
        return replace(
            builder,
            groups=tuple(g for g in builder.groups if g.id != number),
            rows=tuple(r for r in builder.rows if r.group != number),
        )
    return builder


def _coerce(field_name_: str, text: str) -> object:
    if field_name_.startswith("attributes."):
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        return parse_number(text)
    return text


def condition_from_row(row: Row) -> dict:
    """One row as a filter condition; what is missing is left out so validate_filter names it."""
    cond: dict = {"field": row.field, "op": row.op}
    if row.op in VALUELESS:
        return cond
    if not row.value:
        return cond
    if row.field == "last_seen_at":
        cond["value"] = int(row.value) if row.value.isdigit() and len(row.value) < 6 else row.value
    elif row.kind == "attribute":
        other = row.value
        cond["field_value"] = other if other.startswith("attributes.") else "attributes." + other
    elif row.op in ("in", "not_in"):
        cond["value"] = [_coerce(row.field, part.strip()) for part in row.value.split(",") if part.strip()]
    else:
        cond["value"] = _coerce(row.field, row.value)
    return cond


def tree_from_builder(builder: Builder) -> tuple[dict, dict[int, str]]:
    """The filter tree and, per row id, the path validate_filter uses for that row."""
    children, paths = [], {}
    for row in builder.rows_of(0):
        paths[row.id] = f"filter.{builder.mode}.{len(children)}"
        children.append(condition_from_row(row))
    for group in builder.groups:
        base = f"filter.{builder.mode}.{len(children)}.{group.mode}"
        members = []
        for row in builder.rows_of(group.id):
            paths[row.id] = f"{base}.{len(members)}"
            members.append(condition_from_row(row))
        children.append({group.mode: members})
    return {builder.mode: children}, paths


def _row_from_condition(rid: int, group: int, cond: dict) -> Row:
    if "field_value" in cond:
        return Row(rid, group, cond.get("field", ""), cond.get("op", "="), "attribute", str(cond["field_value"]))
    value = cond.get("value", "")
    if isinstance(value, list):
        text = ", ".join(_display(v) for v in value)
    else:
        text = _display(value) if "value" in cond else ""
    return Row(rid, group, cond.get("field", ""), cond.get("op", "="), "value", text)


def _display(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def builder_from_tree(tree: dict) -> Builder:
    """The builder for a saved filter (two levels: the builder never makes deeper trees)."""
    mode = "any" if "any" in tree else "all"
    rows, groups = [], []
    for child in tree.get(mode, []):
        if isinstance(child, dict) and ("all" in child or "any" in child):
            gid = len(groups) + 1
            gmode = "any" if "any" in child else "all"
            groups.append(Group(gid, gmode))
            for cond in child[gmode]:
                if isinstance(cond, dict) and "field" in cond:
                    rows.append(_row_from_condition(len(rows) + 1, gid, cond))
        elif isinstance(child, dict):
            rows.append(_row_from_condition(len(rows) + 1, 0, child))
    return Builder(mode, tuple(rows), tuple(groups))


# The builder control each part of a condition's path is typed in (a compared attribute goes in the value box).
CONTROL_OF_PART = {"field": "field", "op": "op", "value": "value", "field_value": "value"}


def _rows_longest_path_first(paths: dict[int, str]) -> list[tuple[int, str]]:
    # Longest path first, so "filter.all.1" never claims a message of "filter.all.1.any.0".
    return sorted(paths.items(), key=lambda item: len(item[1]), reverse=True)


def _row_of(problem: str, ordered: list[tuple[int, str]]) -> tuple[int, str] | None:
    for rid, path in ordered:
        if problem.startswith((path + ".", path + ":")):
            return rid, path
    return None


def messages_by_row(problems: list[str], paths: dict[int, str]) -> tuple[dict[int, list[str]], list[str]]:
    """validate_filter's messages placed next to their row; the rest apply to the whole filter."""
    by_row: dict[int, list[str]] = {}
    general = []
    ordered = _rows_longest_path_first(paths)
    for problem in problems:
        located = _row_of(problem, ordered)
        if located:
            by_row.setdefault(located[0], []).append(_humane(problem, located[1]))
        else:
            general.append(problem)
    return by_row, general


def invalid_controls(problems: list[str], paths: dict[int, str]) -> dict[int, list[str]]:
    """Per row, the controls a problem names ("filter.all.0.value: ..." -> value). A problem about the condition
    as a whole names none, so a control the user got right is never marked invalid."""
    controls: dict[int, list[str]] = {}
    ordered = _rows_longest_path_first(paths)
    for problem in problems:
        located = _row_of(problem, ordered)
        if not located or problem.startswith(located[1] + ":"):
            continue
        part = problem[len(located[1]) + 1 :].partition(":")[0]
        control = CONTROL_OF_PART.get(part)
        if control and control not in controls.setdefault(located[0], []):
            controls[located[0]].append(control)
    return controls


def _humane(problem: str, path: str) -> str:
    """Drop the machine path: the message already sits next to its row."""
    rest = problem[len(path) :]
    if rest.startswith(":"):
        return rest[1:].strip()
    name, _, message = rest[1:].partition(":")
    return f"{name}: {message.strip()}" if message else rest
