"""app/ and jobs/ use libraries through their public APIs: no ``thing._private`` on an object Herald does not own.

Read from the source: an attribute starting with one underscore may be read only on ``self``/``cls``,
``super()``, a name imported from Herald's own packages (relative or ``app``/``jobs``) or a class defined
in the same module. Anything else -- a library module, an object a library returned, a library object
kept in an attribute (``self.client._pool``) -- is another package's private state, which changes
without notice in a minor release. A Herald object read that way should make the attribute public.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("app", "jobs", "wsgi.py")
FIRST_PARTY = {"app", "jobs"}

# Public although spelled with an underscore, each with where it is documented as such.
PUBLIC_DESPITE_UNDERSCORE = {
    "_get_current_object": "Werkzeug's LocalProxy: the documented way to the object behind current_app",
    "_asdict": "namedtuple's API (underscored so it cannot clash with a field)",
    "_replace": "namedtuple's API",
    "_fields": "namedtuple's API",
    "_make": "namedtuple's API",
    "_exit": "os._exit, documented for a forked child",
}


def is_private(attribute: str) -> bool:
    return attribute.startswith("_") and not (attribute.startswith("__") and attribute.endswith("__"))


def own_names(tree: ast.Module) -> set[str]:
    """Names that stand for Herald's own code in this module: its imports of app/jobs and its classes."""
    names = {"self", "cls"} | {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] in FIRST_PARTY):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(
                alias.asname or alias.name.split(".")[0]
                for alias in node.names
                if alias.name.split(".")[0] in FIRST_PARTY
            )
    return names


def private_reads(source: str, filename: str = "<source>") -> list[str]:
    """``file:line: expression`` for every private attribute read on something Herald does not own."""
    tree = ast.parse(source, filename)
    own = own_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not is_private(node.attr) or node.attr in PUBLIC_DESPITE_UNDERSCORE:
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in own:
            continue
        if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
            continue
        found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_app_and_jobs_read_no_private_attribute_of_a_library():
    found = []
    for root in SCANNED:
        path = ROOT / root
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            found += private_reads(file.read_text(), str(file.relative_to(ROOT)))
    assert found == []


def test_the_scan_finds_what_it_is_for():
    source = """
import pybreaker
from webpush import WebPush
from app.channels import guard
from . import sibling


class Mine:
    _registry = {}

    def __init__(self):
        self.webpush = WebPush()
        self._cache = {}

    def send(self, breaker: pybreaker.CircuitBreaker, worker):
        opened = breaker._state_storage.opened_at
        key = breaker._state_storage._namespace("fail_counter")
        body = self.webpush._encrypt(b"x")
        stop = worker._stop_requested
        fine = (self._cache, Mine._registry, guard._BREAKERS, sibling._helper, super()._setup(),
                dict(a=1).__class__, point._replace(x=1))
"""
    assert sorted(line.split(": ", 1)[1] for line in private_reads(source)) == [
        "breaker._state_storage",
        "breaker._state_storage",
        "breaker._state_storage._namespace",
        "self.webpush._encrypt",
        "worker._stop_requested",
    ]
