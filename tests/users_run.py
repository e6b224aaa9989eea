"""Herald started exactly as a newcomer's `make run` starts it, for the tests that check what users see.

A copy of the project (its files, without .git, the instance folder or
caches; the virtualenv linked in) in a short temporary folder, where
`.venv/bin/flask --app wsgi up` runs with none of the suite's settings: no
DATABASE_URL, REDIS_URL, SMTP_URL or SECRET_KEY, so the launcher makes the
SQLite file, the embedded redis-server on its unix socket, the mail sink and
the demo data in the copy's own ./instance. Only the port differs
(HERALD_PORT, a free one), so runs can share a machine. Stopping sends Ctrl-C
to the launcher, then SIGKILL to anything still running in the copy.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from app.demo import DemoCredentials, credentials_path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "instance", "__pycache__", "*.pyc", ".pytest_cache", "test-results"
)
# The suite's own settings (tests/conftest.py puts them in os.environ); a fresh shell has none of them.
USER_SETTINGS = ("DATABASE_URL", "REDIS_URL", "SMTP_URL", "SECRET_KEY")


@dataclass
class RunningHerald:
    root: Path  # the project copy: `make run`'s working directory
    port: int
    output: str  # what `flask up` printed up to its banner
    credentials: DemoCredentials

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def inbox_link(self) -> str:
        """The demo user's signed inbox link the banner prints."""
        return re.search(r"inbox: (http\S+)", self.output).group(1)

    def fresh_shell_environment(self) -> dict[str, str]:
        return users_environment(self.port)


def users_environment(port: int) -> dict[str, str]:
    """A fresh shell's environment: none of the suite's settings, no virtualenv on PATH, HERALD_PORT set."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in USER_SETTINGS and not k.startswith("HERALD_") and k != "VIRTUAL_ENV"
    }
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin and "/.venv/" not in p + "/"
    )
    env["HERALD_PORT"] = str(port)
    return env


def copy_project(destination: Path) -> Path:
    shutil.copytree(PROJECT_ROOT, destination, ignore=NOT_COPIED, symlinks=True)
    venv = PROJECT_ROOT / ".venv"
    (destination / ".venv").symlink_to(venv.resolve() if venv.exists() else Path(sys.prefix))
    return destination


def processes_in(root: Path) -> list[int]:
    """Pids working in the copy: the launcher and everything it started (each child has a session of its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                cwd = Path(os.readlink(entry / "cwd"))
                if cwd == root or root in cwd.parents:
                    found.append(int(entry.name))
    return found


def _wait_for_banner(launcher: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        output = log_path.read_text()
        if "press Ctrl-C" in output:
            return output
        if launcher.poll() is not None:
            raise RuntimeError(f"flask up exited with {launcher.returncode}:\n{output[-4000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"flask up was not ready within {START_TIMEOUT:.0f} s:\n{log_path.read_text()[-4000:]}")


def _stop(launcher: subprocess.Popen, root: Path) -> list[int]:
    """Ctrl-C as a terminal sends it; SIGKILL for whatever is left. Returns the pids that needed SIGKILL."""
    if launcher.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            launcher.wait(STOP_TIMEOUT)
    leftovers = processes_in(root)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait(10)
    return leftovers


@contextlib.contextmanager
def herald_as_make_run_starts_it(port: int):
    parent = Path(tempfile.mkdtemp(prefix="herald-run-", dir="/tmp"))
    root = copy_project(parent / "herald")
    log_path = parent / "up.log"
    with open(log_path, "w") as log:
        launcher = subprocess.Popen(
            [".venv/bin/flask", "--app", "wsgi", "up"],
            cwd=root,
            env=users_environment(port),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    leftovers = []
    try:
        output = _wait_for_banner(launcher, log_path)
        credentials = DemoCredentials.from_text(credentials_path(root / "instance").read_text())
        yield RunningHerald(root, port, output, credentials)
    finally:
        leftovers = _stop(launcher, root)
        shutil.rmtree(parent, ignore_errors=True)
    assert leftovers == [], f"processes outlived Ctrl-C: {leftovers}"
