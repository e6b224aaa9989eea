"""Issue 12's size rule for app/ and jobs/: no file over 400 lines, no function over 60.

A file or function past the limit is split by what it does (see STYLE.md): the
failure names each one with its length so the fix starts at the right place.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("app", "jobs")
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def python_files() -> list[Path]:
    return sorted(path for folder in SCANNED for path in (ROOT / folder).rglob("*.py"))


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function or method longer than ``limit`` lines.

    A function's length runs from its first decorator to its last line, docstring and comments included;
    nested functions are measured on their own too.
    """
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                length = child.end_lineno - first + 1
                if length > limit:
                    found.append((name, first, length))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def test_the_checks_measure_what_they_say():
    short = "def f():\n    return 1\n"
    body, method_body = "    x = 1\n" * 60, "        x = 1\n" * 60
    source = f"@decorator\ndef big():\n{body}\nclass C:\n    def method(self):\n{method_body}\n" + short
    assert long_functions(source) == [("big", 1, 62), ("C.method", 65, 61)]
    assert long_functions(short) == []
    nested = "def outer():\n    def inner():\n" + "        y = 2\n" * 60
    assert long_functions(nested) == [("outer", 1, 62), ("outer.inner", 2, 61)]


def test_no_file_in_app_or_jobs_is_over_400_lines():
    too_long = {
        path.relative_to(ROOT).as_posix(): lines
        for path in python_files()
        if (lines := len(path.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert too_long == {}, f"files over {MAX_FILE_LINES} lines (split them by concern): {too_long}"


def test_no_function_in_app_or_jobs_is_over_60_lines():
    too_long = [
        f"{path.relative_to(ROOT).as_posix()}:{line} {name} ({length} lines)"
        for path in python_files()
        for name, line, length in long_functions(path.read_text())
    ]
    assert too_long == [], f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(too_long)
