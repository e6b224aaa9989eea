"""CSV import of recipients: reading and validating rows. Pure: no database, no files opened here.

Columns: ``user_id`` (required), ``email``, ``phone``, ``timezone``, ``locale``;
every other column becomes an attribute, typed by TYPING_RULES (a CSV cell has no
type of its own, so the rule is explicit and shown on the import page). Each
row is checked with the same validators as the API (app/schemas.py), so a
CSV cannot put into the database what ``PUT /v1/users/<id>`` would refuse.
An empty cell leaves that field (or attribute) as it is.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from app.schemas import LOCALE_PATTERN, parse_e164, parse_email, parse_timezone

ID_COLUMN = "user_id"
MAX_USER_ID = 255
MAX_ATTRIBUTE_NAME = 128
# ASCII digits only, no leading zero: 007 and 02134 are codes, not numbers.
_INTEGER = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
LARGEST_NUMBER = 2**53  # the API's limit: beyond it a JSON number does not survive a round trip
TYPING_RULES = (
    "A cell that is a whole number without leading zeros (42, -7) becomes an integer, and a decimal "
    "(4.5, .5, 1e3) a number, both within ±9,007,199,254,740,992; anything else — 007, 02134, "
    "1,5, true, text — is kept as text, exactly as written apart from surrounding spaces."
)
_LOCALE = re.compile(LOCALE_PATTERN)
_VALIDATORS = {"email": parse_email, "phone": parse_e164, "timezone": parse_timezone}


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "message": self.message}


@dataclass
class ImportRecord:
    """One valid row: the profile fields and attributes it sets (absent = unchanged)."""

    external_id: str
    line: int
    profile: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, object] = field(default_factory=dict)

    def merge(self, later: ImportRecord) -> None:
        """A later row for the same user wins field by field."""
        self.profile.update(later.profile)
        self.attributes.update(later.attributes)
        self.line = later.line


def parse_number(text: str) -> object:
    """``"42"`` -> 42, ``"4.5"`` -> 4.5; anything else (``"nan"``, ``"007"``, ``"1,5"``) stays a string (TYPING_RULES)."""
    value = text.strip()
    if _INTEGER.fullmatch(value):
        number = int(value)
    elif _DECIMAL.fullmatch(value):
        number = float(value)
    else:
        return text
    return number if math.isfinite(number) and abs(number) <= LARGEST_NUMBER else text


def header_problems(header: list[str] | None) -> list[str]:
    """What is wrong with the header row, as whole-file messages (the import does not start)."""
    if not header:
        return ["The file is empty: the first line must name the columns, including user_id."]
    names = [name.strip() for name in header]
    problems = []
    if ID_COLUMN not in names:
        problems.append("The first line has no user_id column.")
    if any(not name for name in names):
        problems.append("A column has no name in the first line.")
    duplicates = sorted({name for name in names if name and names.count(name) > 1})
    if duplicates:
        problems.append(f"Columns named twice: {', '.join(duplicates)}.")
    too_long = [name for name in names if len(name) > MAX_ATTRIBUTE_NAME]
    if too_long:
        problems.append(f"Column names are at most {MAX_ATTRIBUTE_NAME} characters.")
    return problems


def parse_row(line: int, row: dict[str, str | None]) -> tuple[ImportRecord | None, list[RowError]]:
    """Validate one row; a row with any error is skipped whole (never half-applied)."""
    errors: list[RowError] = []
    user_id = (row.get(ID_COLUMN) or "").strip()
    if not user_id:
        errors.append(RowError(line, ID_COLUMN, "is required"))
    elif len(user_id) > MAX_USER_ID:
        errors.append(RowError(line, ID_COLUMN, f"is longer than {MAX_USER_ID} characters"))
    if None in row:
        errors.append(RowError(line, "", "has more cells than the header has columns"))
    record = ImportRecord(external_id=user_id, line=line)
    for name, raw in row.items():
        if name is None or name == ID_COLUMN or raw is None:
            continue
        value = raw.strip()
        if not value:
            continue
        if name in _VALIDATORS:
            try:
                record.profile[name] = _VALIDATORS[name](value)
            except ValueError as error:
                errors.append(RowError(line, name, str(error)))
        elif name == "locale":
            if _LOCALE.fullmatch(value):
                record.profile[name] = value
            else:
                errors.append(RowError(line, name, "must look like en or pt-BR"))
        else:
            record.attributes[name] = parse_number(value)
    return (None, errors) if errors else (record, [])


def read_rows(lines: Iterable[str]) -> tuple[list[str], Iterator[tuple[int, dict[str, str | None]]]]:
    """The header and an iterator of (line number where the row starts, row) for a CSV text stream."""
    reader = csv.reader(lines)
    header = [name.strip() for name in next(reader, [])]

    def rows() -> Iterator[tuple[int, dict[str, str | None]]]:
        start = reader.line_num + 1
        for cells in reader:
            if any(cell.strip() for cell in cells):
                row: dict[str, str | None] = dict(zip(header, cells, strict=False))
                if len(cells) > len(header):
                    row[None] = "extra"  # type: ignore[index]
                for name in header[len(cells) :]:
                    row[name] = None
                yield start, row
            start = reader.line_num + 1

    return header, rows()
