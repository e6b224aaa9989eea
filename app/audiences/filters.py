"""Audience filters: a small JSON tree compiled to ONE SQL boolean expression over recipients.

Nothing is filtered in Python, so an audience of millions costs one query.
The tree::

    {"all": [                                   # AND ("any" for OR); groups nest
        {"field": "attributes.balance", "op": "<", "field_value": "attributes.low_balance_threshold"},
        {"field": "timezone", "op": "in", "value": ["Asia/Singapore", "Europe/Lisbon"]},
        {"field": "attributes.plan", "op": "exists"},
        {"field": "reachable", "op": "=", "value": "email"},
        {"field": "last_seen_at", "op": "within_days", "value": 7},
        {"field": "topic", "op": "=", "value": "team"},   # subscribers of a topic
    ]}

``validate_filter`` is pure and returns human messages with the path of each
problem; ``compile_filter`` assumes a valid tree.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from numbers import Number

from sqlalchemy import and_, exists, false, func, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from app.channels import address_fields, channel_names, device_platforms
from app.models import Device, Recipient, Topic, TopicSubscription

COLUMNS = {
    "external_id": Recipient.external_id,
    "email": Recipient.email,
    "phone": Recipient.phone,
    "timezone": Recipient.timezone,
    "locale": Recipient.locale,
}
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
OPERATORS = (*COMPARISONS, "in", "not_in", "exists", "not_exists")
REACHABLE_CHANNELS = channel_names()
MAX_DEPTH = 5
MAX_CONDITIONS = 100


def _attribute_name(field: str) -> str | None:
    if field.startswith("attributes.") and len(field) > len("attributes.") and len(field) <= 140:
        name = field[len("attributes.") :]
        return name if name.replace("_", "").replace("-", "").isalnum() else None
    return None


def validate_filter(tree, path: str = "filter", depth: int = 0, counter: list | None = None) -> list[str]:
    """Every problem in the tree, each prefixed by where it is (``filter.all.2.value``)."""
    counter = counter if counter is not None else [0]
    if not isinstance(tree, dict):
        return [f"{path}: must be an object"]
    if "all" in tree or "any" in tree:
        key = "all" if "all" in tree else "any"
        if set(tree) != {key}:
            return [f"{path}: a group has exactly one key, 'all' or 'any'"]
        if depth >= MAX_DEPTH:
            return [f"{path}: groups nest at most {MAX_DEPTH} deep"]
        children = tree[key]
        if not isinstance(children, list):
            return [f"{path}.{key}: must be a list"]
        problems = []
        for index, child in enumerate(children):
            problems += validate_filter(child, f"{path}.{key}.{index}", depth + 1, counter)
        return problems
    counter[0] += 1
    if counter[0] > MAX_CONDITIONS:
        return [f"{path}: at most {MAX_CONDITIONS} conditions"]
    return _validate_condition(tree, path)


def _validate_condition(cond: dict, path: str) -> list[str]:
    field, op = cond.get("field"), cond.get("op")
    unknown = set(cond) - {"field", "op", "value", "field_value"}
    if unknown:
        return [f"{path}: unknown key {sorted(unknown)[0]!r}"]
    if not isinstance(field, str):
        return [f"{path}.field: required"]
    if field == "reachable":
        if op != "=" or cond.get("value") not in REACHABLE_CHANNELS:
            return [f"{path}: reachable takes op '=' and a channel: {', '.join(REACHABLE_CHANNELS)}"]
        return []
    if field == "topic":
        if op != "=" or not isinstance(cond.get("value"), str) or not 0 < len(cond["value"]) <= 128:
            return [f"{path}: topic takes op '=' and a topic key"]
        return []
    if field == "last_seen_at":
        value = cond.get("value")
        if op != "within_days" or not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 3650:
            return [f"{path}: last_seen_at takes op 'within_days' and a whole number of days (1-3650)"]
        return []
    if field not in COLUMNS and _attribute_name(field) is None:
        return [
            f"{path}.field: unknown field {field!r}; use one of {', '.join(COLUMNS)}, attributes.<name>, reachable, last_seen_at, topic"
        ]
    if op not in OPERATORS:
        return [f"{path}.op: unknown operator {op!r}; use one of {', '.join(OPERATORS)}"]
    if op in ("exists", "not_exists"):
        return [] if "value" not in cond and "field_value" not in cond else [f"{path}: {op} takes no value"]
    if "field_value" in cond:
        other = cond["field_value"]
        if (
            op not in COMPARISONS
            or not isinstance(other, str)
            or _attribute_name(other) is None
            or _attribute_name(field) is None
        ):
            return [f"{path}.field_value: compares two attributes (attributes.<a> {op} attributes.<b>)"]
        return []
    if "value" not in cond:
        return [f"{path}.value: required for {op}"]
    value = cond["value"]
    if op in ("in", "not_in"):
        if (
            not isinstance(value, list)
            or not value
            or len(value) > 1000
            or not all(isinstance(v, (str, Number)) and not isinstance(v, bool) for v in value)
        ):
            return [f"{path}.value: {op} takes a list of 1-1000 strings or numbers"]
        return []
    if not isinstance(value, (str, Number)) or (isinstance(value, bool) and op not in ("=", "!=")):
        return [f"{path}.value: must be a string or a number"]
    if isinstance(value, str) and op in ("<", "<=", ">", ">=") and field not in COLUMNS:
        return [f"{path}.value: {op} on an attribute needs a number"]
    return []


def _compare(left, op: str, right):
    return {
        "=": left == right,
        "!=": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[op]


def _json_type(name: str, dialect: str):
    if dialect == "postgresql":
        return func.jsonb_typeof(Recipient.attributes[name])
    return func.json_type(Recipient.attributes, f'$."{name}"')


def _is_number(name: str, dialect: str) -> ColumnElement:
    """Numeric comparisons only look at JSON numbers: a stray string never raises a cast error."""
    kind = _json_type(name, dialect)
    return kind == "number" if dialect == "postgresql" else kind.in_(("integer", "real"))


def _attribute_condition(name: str, op: str, cond: dict, dialect: str) -> ColumnElement:
    attribute = Recipient.attributes[name]
    if op in ("exists", "not_exists"):
        present = _json_type(name, dialect).is_not(None) & (_json_type(name, dialect) != "null")
        return present if op == "exists" else not_(present)
    if "field_value" in cond:
        other = _attribute_name(cond["field_value"])
        return and_(
            _is_number(name, dialect),
            _is_number(other, dialect),
            _compare(attribute.as_float(), op, Recipient.attributes[other].as_float()),
        )
    value = cond["value"]
    if op in ("in", "not_in"):
        numbers = [v for v in value if not isinstance(v, str)]
        strings = [v for v in value if isinstance(v, str)]
        matched = or_(
            and_(_is_number(name, dialect), attribute.as_float().in_(numbers)) if numbers else false(),
            attribute.as_string().in_(strings) if strings else false(),
        )
        return matched if op == "in" else not_(matched)
    if isinstance(value, bool):
        return _compare(attribute.as_boolean(), op, value)
    if isinstance(value, Number):
        return and_(_is_number(name, dialect), _compare(attribute.as_float(), op, float(value)))
    return _compare(attribute.as_string(), op, value)


def _reachable(channel: str) -> ColumnElement:
    """The SQL twin of the registry's ``reachable``: an address in the channel's column, or an active device
    of one of its platforms; a channel with neither (in-app) reaches everyone."""
    if channel in address_fields():
        return getattr(Recipient, address_fields()[channel]).is_not(None)
    if channel in device_platforms():
        return exists(
            select(Device.id).where(
                Device.recipient_id == Recipient.id,
                Device.active.is_(True),
                Device.platform.in_(sorted(device_platforms()[channel])),
            )
        )
    return true()


def compile_filter(tree: dict, dialect: str, now: datetime) -> ColumnElement:
    """The WHERE clause for a valid tree. ``now`` is passed in so "last N days" is testable."""
    if "all" in tree:
        parts = [compile_filter(child, dialect, now) for child in tree["all"]]
        return and_(true(), *parts)
    if "any" in tree:
        parts = [compile_filter(child, dialect, now) for child in tree["any"]]
        return or_(false(), *parts)
    field, op = tree["field"], tree["op"]
    if field == "reachable":
        return _reachable(tree["value"])
    if field == "topic":
        return exists(
            select(TopicSubscription.recipient_id)
            .join(Topic, Topic.id == TopicSubscription.topic_id)
            .where(TopicSubscription.recipient_id == Recipient.id, Topic.key == tree["value"])
        )
    if field == "last_seen_at":
        return Recipient.last_seen_at >= now - timedelta(days=tree["value"])
    name = _attribute_name(field)
    if name is not None:
        return _attribute_condition(name, op, tree, dialect)
    column = COLUMNS[field]
    if op == "exists":
        return column.is_not(None)
    if op == "not_exists":
        return column.is_(None)
    if op == "in":
        return column.in_([str(v) for v in tree["value"]])
    if op == "not_in":
        return or_(column.is_(None), column.not_in([str(v) for v in tree["value"]]))
    return _compare(column, op, tree["value"])
