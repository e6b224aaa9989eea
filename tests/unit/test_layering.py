"""The layering of issue 12, read from the source: app/ never imports jobs/, and module-level imports have no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def project_modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of app/ and jobs/ (a package is its ``__init__.py``)."""
    modules = {}
    for package in ("app", "jobs"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(node: ast.AST, package: str) -> list[str]:
    """Every dotted name an import statement may load (``from a import b`` may load ``a`` or ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def module_level_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``name`` imports when it is loaded (top level and top-level ``try``; not inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    statements = []
    for node in ast.parse(path.read_text()).body:
        statements += node.body if isinstance(node, ast.Try) else [node]
    found = set()
    for statement in statements:
        if isinstance(statement, ast.ImportFrom):
            base, *members = imported_names(statement, package)
            found.update(member if member in modules else base for member in members)
        else:
            found.update(imported_names(statement, package))
    found &= set(modules)
    found.discard(name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while component[-1:] != [node]:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_nothing_in_app_imports_jobs_even_inside_a_function():
    offenders = []
    for name, path in project_modules().items():
        if not name.startswith("app"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if any(n == "jobs" or n.startswith("jobs.") for n in imported_names(node, "app")):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], "app/ enqueues jobs by dotted name through app/tasks.py; it never imports jobs/"


def test_the_scan_sees_module_and_function_level_imports_of_jobs():
    source = "from jobs.delivery import deliver\n\ndef later():\n    import jobs.imports\n"
    found = [n for node in ast.walk(ast.parse(source)) for n in imported_names(node, "app")]
    assert "jobs.delivery" in found and "jobs.imports" in found


def test_module_level_imports_of_app_and_jobs_have_no_cycles():
    modules = project_modules()
    graph = {name: module_level_imports(name, path, modules) for name, path in modules.items()}
    assert graph["jobs.delivery"] >= {"app.pipeline.deliver", "app.pipeline.route"}, "the scan must see real imports"
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_job_name_app_enqueues_is_a_function_of_jobs():
    """app/ names jobs in strings, so a typo or a moved job would only show when a worker picks it up."""
    import importlib
    import re

    names = {
        node.value
        for path in project_modules().values()
        if path.relative_to(ROOT).parts[0] == "app"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"jobs(\.\w+)+", node.value)
    }
    assert {"jobs.delivery.deliver", "jobs.campaigns.run_batch", "jobs.imports.run_import"} <= names
    for name in sorted(names):
        module, _, function = name.rpartition(".")
        assert callable(getattr(importlib.import_module(module), function, None)), name
