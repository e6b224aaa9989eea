"""Herald's roles as separate process groups, started the way the README's production section starts them.

For the multi-process tests (scale-out, Sentinel, scheduler leadership): each
process gets a session of its own, so ``kill_worker`` (SIGKILL to the group)
takes down everything it started, as a crashed host would.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from app.inbox.auth import user_token
from app.leadership import LEADER_KEY_PARTS
from tests.conftest import PROJECT_ROOT, free_port, wait_for_port


def start_web(env: dict, log_path: Path, port: int | None = None) -> tuple[subprocess.Popen, int]:
    """``flask web`` (it execs gunicorn with gevent workers) on a free loopback port, once ``/healthz`` answers."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "wsgi",
            "web",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=PROJECT_ROOT,
        env={**env, "HERALD_BASE_URL": f"http://127.0.0.1:{port}"},
        stdout=open(log_path, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, timeout=60, process=process)
        wait_for_health(f"http://127.0.0.1:{port}", timeout=60)
    except RuntimeError:
        process.kill()
        raise RuntimeError(Path(log_path).read_text()[-3000:]) from None
    return process, port


def wait_for_health(base_url: str, timeout: float) -> None:
    """gunicorn listens before its worker has loaded the app; the first answer says the app is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=timeout).status_code in (200, 503):
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{base_url}/healthz did not answer within {timeout}s")


def start_scheduler(env: dict, log_path: Path) -> subprocess.Popen:
    """``flask scheduler`` in a process group of its own, its log kept for assertion messages."""
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "scheduler"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log_path, "w"),
        start_new_session=True,
    )


def leader_pid(client: redis.Redis, prefix: str, timeout: float, not_pid: int | None = None) -> int | None:
    """The pid in the scheduler lease (``host:pid:random``) once a process other than ``not_pid`` holds it."""
    name = ":".join((prefix, *LEADER_KEY_PARTS))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = client.get(name)
        if value is not None and int(value.split(b":")[1]) != not_pid:
            return int(value.split(b":")[1])
        time.sleep(0.05)
    return None


def inbox_cookie(base_url: str, inbox_secret: str, user_id: str) -> str:
    """Sign ``user_id`` into the inbox as the host product's link does; the session cookie to stream with."""
    response = httpx.get(f"{base_url}/inbox?user={user_id}&token={user_token(inbox_secret, user_id)}", timeout=30)
    assert response.status_code == 303, response.text[:300]
    return "session=" + response.cookies["session"]
