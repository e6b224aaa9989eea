"""`flask up` for real: a child process with its own instance folder, SQLite file and embedded Redis.

None of these tests touch the suite's shared database or the machine's Redis:
REDIS_URL is unset, so the launcher starts redis-server on a unix socket in
the instance folder, exactly as on a fresh laptop.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import pytest
from werkzeug.security import check_password_hash

from app.demo import ADMIN_EMAIL, DemoCredentials
from tests.conftest import PROJECT_ROOT, free_port

pytestmark = pytest.mark.slow

FORWARDED_SETTINGS = ("DATABASE_URL", "REDIS_URL", "SMTP_URL", "SECRET_KEY")


class Launcher:
    """One `flask up` run, started in a session of its own like a shell's foreground job."""

    def __init__(self, instance: Path, port: int, secret_key: str):
        self.instance, self.port = instance, port
        self.log_path = instance.parent / f"up-{time.monotonic_ns()}.log"
        env = {k: v for k, v in os.environ.items() if k not in FORWARDED_SETTINGS and not k.startswith("HERALD_")}
        env.update(
            {
                "HERALD_INSTANCE_PATH": str(instance),
                "DATABASE_URL": f"sqlite:///{instance / 'herald.db'}",
                "HERALD_PORT": str(port),
                "HERALD_RQ_WORKERS": "1",
                "HERALD_WEB_WORKERS": "1",
                "SECRET_KEY": secret_key,
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self, *args: str) -> Launcher:
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", "up", *args],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def wait_until_ready(self, timeout: float = 60.0) -> float:
        """Seconds until /healthz answers 200 and the banner is printed."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                pytest.fail(f"flask up exited with {self.process.returncode}:\n{self.output[-4000:]}")
            if health_status(self.port) == 200 and "press Ctrl-C" in self.output:
                return time.monotonic() - started
            time.sleep(0.1)
        self.kill()
        pytest.fail(f"flask up was not ready within {timeout:.0f} s:\n{self.output[-4000:]}")

    def interrupt(self, timeout: float = 20.0) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout)

    def kill(self) -> None:
        for pid in processes_of(self.instance):
            os.kill(pid, signal.SIGKILL)


def health_status(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def processes_of(instance: Path) -> list[int]:
    """Pids whose environment names this instance: the launcher and everything it started, grandchildren included."""
    marker = f"HERALD_INSTANCE_PATH={instance}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environment = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environment and (entry / "stat").read_text().split(") ")[-1][0] != "Z":
                found.append(int(entry.name))
    return found


def wait_for_no_processes(instance: Path, timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while processes_of(instance) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes_of(instance)


def database_counts(instance: Path) -> dict[str, int]:
    with sqlite3.connect(instance / "herald.db") as conn:
        return {
            "recipients": conn.execute("SELECT count(*) FROM recipients").fetchone()[0],
            "time_zones": conn.execute("SELECT count(DISTINCT timezone) FROM recipients").fetchone()[0],
            "staff": conn.execute("SELECT count(*) FROM staff_users").fetchone()[0],
            "api_keys": conn.execute("SELECT count(*) FROM api_keys").fetchone()[0],
        }


def admin_password_hash(instance: Path) -> str:
    with sqlite3.connect(instance / "herald.db") as conn:
        return conn.execute("SELECT password_hash FROM staff_users WHERE email = ?", (ADMIN_EMAIL,)).fetchone()[0]


def send_test_mail(output: str) -> None:
    port = int(re.search(r"SMTP sink listening on smtp://127\.0\.0\.1:(\d+)", output).group(1))
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "herald@herald.local", "demo-00001@example.test", "Sink check"
    message.set_content("hello")
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.send_message(message)


@pytest.fixture
def instance(tmp_path):
    folder = tmp_path / "instance"
    yield folder
    for pid in processes_of(folder):
        os.kill(pid, signal.SIGKILL)


def test_up_serves_demo_data_stops_on_ctrl_c_and_restarts_fast(instance):
    port, secret_key = free_port(), secrets.token_hex(32)
    first = Launcher(instance, port, secret_key).start()
    first_start = first.wait_until_ready()

    assert f"started Redis on {instance / 'redis.sock'}" in first.output
    credentials = DemoCredentials.from_text(first.output)
    assert check_password_hash(admin_password_hash(instance), credentials.admin_password)
    assert get_status(f"http://127.0.0.1:{port}/console/login") == 200
    counts = database_counts(instance)
    assert counts["recipients"] >= 3000 and counts["time_zones"] >= 20
    send_test_mail(first.output)
    # The demo's low-balance rule may have mailed the sink too: exactly one of the messages is the check.
    checks = [p.read_bytes().count(b"Subject: Sink check") for p in (instance / "mail").glob("*.eml")]
    assert sum(checks) == 1
    assert len(processes_of(instance)) >= 7  # launcher, redis, gunicorn + worker, 2 RQ workers, scheduler

    assert first.interrupt() == 0
    assert wait_for_no_processes(instance) == []
    assert not (instance / "redis.sock").exists()

    second = Launcher(instance, port, secret_key).start()
    second_start = second.wait_until_ready()
    print(f"\nflask up ready after {first_start:.1f} s (first run), {second_start:.1f} s (second run)")
    # A few seconds when quiet; the bound catches a reinstall or a reload of the demo data, not a busy machine.
    assert second_start < 25
    assert "demo data already loaded" in second.output
    assert DemoCredentials.from_text(second.output) == credentials
    assert database_counts(instance) == counts
    assert second.interrupt() == 0
    assert wait_for_no_processes(instance) == []


def test_a_child_that_dies_stops_everything_with_a_nonzero_exit(instance):
    launcher = Launcher(instance, free_port(), secrets.token_hex(32)).start("--no-demo")
    launcher.wait_until_ready()
    assert database_counts(instance)["recipients"] == 0
    worker = next(
        pid
        for pid in processes_of(instance)
        if b"worker\0critical\0high\0normal" in Path(f"/proc/{pid}/cmdline").read_bytes()
    )

    os.kill(worker, signal.SIGKILL)

    assert launcher.process.wait(20) == 1
    assert "worker-1" in launcher.output and "exited unexpectedly" in launcher.output
    assert wait_for_no_processes(instance) == []


def test_a_busy_port_is_one_clear_line_and_starts_nothing(instance):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        launcher = Launcher(instance, port, secrets.token_hex(32)).start()
        assert launcher.process.wait(30) == 1
    assert (
        f"Error: port {port} is in use; stop what uses it or set HERALD_PORT (or --port) to another port"
        in launcher.output
    )
    assert not (instance / "redis.sock").exists()
    assert wait_for_no_processes(instance) == []
