"""Side-by-side diffs between two template versions (pure), for the editor's diff page."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from app.console.forms_content import CHANNEL_LABELS, EDITOR_CHANNELS
from app.delivery.rendering import CHANNEL_FIELDS


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "equal", "delete", "insert", "replace"
    old_number: int | None
    old_text: str | None
    new_number: int | None
    new_text: str | None


@dataclass(frozen=True)
class FieldDiff:
    locale: str
    channel: str
    field: str
    lines: tuple[DiffLine, ...]

    @property
    def label(self) -> str:
        return f"{self.locale} · {CHANNEL_LABELS.get(self.channel, self.channel)} · {self.field}"


def diff_text(old: str, new: str) -> tuple[DiffLine, ...]:
    """Side-by-side line diff (difflib), one row per line pair, for an HTML table."""
    a, b = old.split("\n") if old else [], new.split("\n") if new else []
    rows = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [DiffLine("equal", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k]) for k in range(i2 - i1)]
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            old_i, new_j = i1 + k, j1 + k
            has_old, has_new = old_i < i2, new_j < j2
            kind = "replace" if has_old and has_new else ("delete" if has_old else "insert")
            rows.append(
                DiffLine(
                    kind,
                    old_i + 1 if has_old else None,
                    a[old_i] if has_old else None,
                    new_j + 1 if has_new else None,
                    b[new_j] if has_new else None,
                )
            )
    return tuple(rows)


def diff_variants(old: dict, new: dict) -> list[FieldDiff]:
    """Only the fields that differ, per locale, channel and field, in a stable order."""
    diffs = []
    for locale in sorted(set(old) | set(new)):
        channels = set(old.get(locale, {})) | set(new.get(locale, {}))
        for channel in sorted(channels, key=lambda c: (EDITOR_CHANNELS + tuple(CHANNEL_FIELDS)).index(c)):
            before, after = old.get(locale, {}).get(channel, {}), new.get(locale, {}).get(channel, {})
            for name in CHANNEL_FIELDS.get(channel, sorted(set(before) | set(after))):
                a, b = before.get(name, ""), after.get(name, "")
                if a != b:
                    diffs.append(FieldDiff(locale, channel, name, diff_text(a, b)))
    return diffs
