"""The audience filter language over a trigger's data (fields ``data.<name>``), evaluated in Python.

Same meaning as over recipient attributes (app/audiences/filters.py): numeric comparisons only match numbers,
strings compare as strings, a missing value matches only ``not_exists`` and ``not_in``.
"""

from __future__ import annotations

from numbers import Number

from app.audiences.filters import _compare


def _number(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def matches_data(tree: dict, data: dict) -> bool:
    if "all" in tree:
        return all(matches_data(child, data) for child in tree["all"])
    if "any" in tree:
        return any(matches_data(child, data) for child in tree["any"])
    value = data.get(tree["field"][len("data.") :])
    op = tree["op"]
    if op in ("exists", "not_exists"):
        return (value is not None) == (op == "exists")
    if "field_value" in tree:
        other = data.get(tree["field_value"][len("data.") :])
        return _number(value) and _number(other) and _compare(float(value), op, float(other))
    target = tree["value"]
    if op in ("in", "not_in"):
        matched = value is not None and any(
            (_number(value) and _number(t) and float(value) == float(t)) or (isinstance(value, str) and value == t)
            for t in target
        )
        return matched == (op == "in")
    if isinstance(target, bool):
        return isinstance(value, bool) and _compare(value, op, target)
    if _number(target):
        return _number(value) and _compare(float(value), op, float(target))
    return isinstance(value, str) and _compare(value, op, target)
