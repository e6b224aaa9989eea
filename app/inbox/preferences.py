"""The preferences page's grid and form, as pure functions over plain values.

Rows are categories, columns channels, plus a row of whole-channel switches
(category ``*``). Security categories are shown but not switchable per
category: routing ignores category opt-outs for security notices, so a
toggle there would be a lie; only a channel switch or the global pause stops them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from app.channels import needs_marketing_opt_in, preference_channels
from app.delivery.constants import ALL_CATEGORIES
from app.delivery.routing import MARKETING_CATEGORY
from app.schemas import PreferencesUpdate
from app.workflows.digest_frequency import DEFAULT, FREQUENCIES

DIGEST_LABELS = dict(
    zip(
        (DEFAULT, *FREQUENCIES),
        ("As the sender bundles them", "Off: each one at once", "At most hourly", "Daily, at 09:00 your time"),
        strict=True,
    )
)


@dataclass(frozen=True)
class Cell:
    channel: str
    category: str
    enabled: bool
    locked: bool = False

    @property
    def value(self) -> str:
        return f"{self.channel}|{self.category}"


@dataclass(frozen=True)
class Row:
    category: str
    security: bool
    cells: tuple[Cell, ...]


def grid(
    categories: set[str], security: set[str], prefs: dict[tuple[str, str], bool]
) -> tuple[tuple[Cell, ...], list[Row]]:
    """(channel switches, one row per category); a switch nobody set reads as on."""
    columns = preference_channels()
    switches = tuple(Cell(channel, ALL_CATEGORIES, prefs.get((channel, ALL_CATEGORIES), True)) for channel in columns)
    rows = []
    for category in sorted(categories - {ALL_CATEGORIES}):
        locked = category in security
        cells = tuple(
            Cell(
                channel,
                category,
                True if locked else prefs.get((channel, category), default_on(channel, category)),
                locked,
            )
            for channel in columns
        )
        rows.append(Row(category, locked, cells))
    return switches, rows


def default_on(channel: str, category: str) -> bool:
    """What routing does when nobody chose: everything on, except marketing on a channel that needs an explicit
    opt-in (SMS)."""
    return not (needs_marketing_opt_in(channel) and category == MARKETING_CATEGORY)


def digest_rows(rows: list[Row], saved: dict[str, str]) -> list[tuple[str, str]]:
    """(category, chosen frequency or ``default``) for every category but security ones, which are never held."""
    return [(row.category, saved.get(row.category, DEFAULT)) for row in rows if not row.security]


class FormError(ValueError):
    pass


def parse_form(
    shown: list[str],
    checked: list[str],
    pause: bool,
    quiet_start: str,
    quiet_end: str,
    digests: dict[str, str] | None = None,
) -> PreferencesUpdate:
    """Checkboxes send only when ticked, so every switch on the page is listed in ``shown``: shown but not checked = off.
    ``digests`` is each category's digest select (category -> frequency)."""
    on = set(checked)
    items = []
    for value in dict.fromkeys(shown):
        channel, _, category = value.partition("|")
        items.append({"channel": channel, "category": category, "enabled": value in on})
    fields: dict = {
        "preferences": items,
        "digests": [{"category": c, "frequency": f} for c, f in (digests or {}).items()],
        "hard_stop": pause,
    }
    if quiet_start and quiet_end:
        fields["quiet_hours"] = {"start": quiet_start[:5], "end": quiet_end[:5]}
    elif quiet_start or quiet_end:
        raise FormError("Give both a start and an end for quiet hours, or leave both empty.")
    else:
        fields["clear_quiet_hours"] = True
    try:
        return PreferencesUpdate.model_validate(fields)
    except ValidationError as error:
        raise FormError("Some settings could not be saved: " + "; ".join(e["msg"] for e in error.errors())) from None
