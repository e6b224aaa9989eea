"""RQ entry point of CSV imports; the import itself is :mod:`app.audiences.importer`."""

from __future__ import annotations

from app.audiences.importer import run_import as _run_import


def run_import(import_id: int) -> str:
    return _run_import(import_id)
