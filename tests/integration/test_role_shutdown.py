"""SIGTERM, as a supervisor sends it (systemd, Kubernetes, `docker stop`), to each role as a real process.

web: open inbox streams end at once with a final ``retry:`` and gunicorn exits long before its graceful
timeout; worker: idle it exits, busy it finishes the job in hand, and a job longer than its shutdown
timeout is handed back to its queue (RQ's retry) instead of waiting out the lease; scheduler: exits 0.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from rq import Queue, Worker
from rq.job import Job, JobStatus

from app.inbox.auth import user_token
from app.redis_client import get_redis
from app.tasks import enqueue
from tests.conftest import PROJECT_ROOT, free_port, kill_worker, start_worker, wait_for_port

pytestmark = pytest.mark.slow


def flask_process(args: list[str], env: dict, log_path) -> subprocess.Popen:
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")


def terminate_and_time(process: subprocess.Popen, timeout: float = 20.0) -> tuple[int, float]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)  # the process alone, as `docker stop` signals PID 1
    return process.wait(timeout), time.monotonic() - started


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    received, deadline = b"", time.monotonic() + timeout
    sock.settimeout(timeout)
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the stream stayed open; got {received[-300:]!r}")


def test_web_ends_open_inbox_streams_with_a_final_retry_and_exits_well_before_its_graceful_timeout(
    app, test_env, tmp_path
):
    port = free_port()
    env = {**os.environ, **test_env, "HERALD_BASE_URL": f"http://127.0.0.1:{port}"}
    web = flask_process(["web", "--port", str(port), "--workers", "1"], env, tmp_path / "web.log")
    try:
        wait_for_port(port, timeout=30, process=web)
        token = user_token(app.config["INBOX_SECRET"], "ana")
        with socket.create_connection(("127.0.0.1", port)) as sign_in:
            sign_in.sendall(
                f"GET /inbox?user=ana&token={token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
            answer = read_until_closed(sign_in, 15).decode()
        cookie = re.search(r"Set-Cookie: ([^;]+);", answer).group(1)
        stream = socket.create_connection(("127.0.0.1", port))
        stream.sendall(f"GET /inbox/stream HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode())
        stream.settimeout(15)
        opening = b""
        while b"retry: 2000" not in opening:
            opening += stream.recv(65536)

        code, took = terminate_and_time(web)
        tail = read_until_closed(stream, 5).decode()
        stream.close()
    finally:
        if web.poll() is None:
            os.killpg(web.pid, signal.SIGKILL)
    final = re.findall(r"retry: (\d+)", tail)
    assert final and 500 <= int(final[-1]) <= 3000, tail
    assert code == 0
    assert took < 15, f"gunicorn took {took:.1f} s; its graceful timeout is 25 s"
    assert "told 1 open inbox stream(s) to reconnect elsewhere" in (tmp_path / "web.log").read_text()


def worker_registered(connection) -> bool:
    """Registered and waiting for a job: RQ installs its signal handlers just before it first waits."""
    workers = Worker.all(connection=connection)
    return len(workers) == 1 and workers[0].get_state() == "idle"


def test_an_idle_worker_exits_on_sigterm(app, test_env):
    worker = start_worker(["--shutdown-timeout", "5"], {**os.environ, **test_env})
    try:
        wait_until(lambda: worker_registered(get_redis()), what="worker registered")
        code, took = terminate_and_time(worker)
    finally:
        kill_worker(worker)
    assert code == 0 and took < 15
    assert Worker.all(connection=get_redis()) == []


def test_a_busy_worker_finishes_the_job_in_hand_then_exits(app, test_env):
    worker = start_worker(["--shutdown-timeout", "20"], {**os.environ, **test_env})
    try:
        wait_until(lambda: worker_registered(get_redis()), what="worker registered")
        job = enqueue("time.sleep", 2)
        queue = Queue("normal", connection=get_redis())
        wait_until(lambda: job.id in queue.started_job_registry.get_job_ids(), what="job started")
        code, took = terminate_and_time(worker)
    finally:
        kill_worker(worker)
    assert code == 0 and took < 20
    assert job.get_status(refresh=True) == JobStatus.FINISHED


def test_a_job_outlasting_the_shutdown_timeout_is_handed_back_to_its_queue_not_left_for_the_lease(app, test_env):
    worker = start_worker(["--shutdown-timeout", "1"], {**os.environ, **test_env})
    try:
        wait_until(lambda: worker_registered(get_redis()), what="worker registered")
        job = enqueue("time.sleep", 120)
        queue = Queue("normal", connection=get_redis())
        wait_until(lambda: job.id in queue.started_job_registry.get_job_ids(), what="job started")
        code, took = terminate_and_time(worker)
    finally:
        kill_worker(worker)
    assert code == 0 and took < 30, f"{took:.1f} s; the dispatch lease it no longer waits for is 120 s"
    # RQ's retry took it: scheduled again in a second for any worker, one retry spent; nothing left "started".
    job = Job.fetch(job.id, connection=get_redis())
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.retries_left == 2
    assert queue.started_job_registry.get_job_ids() == []


def test_the_scheduler_exits_cleanly_on_sigterm(app, test_env, tmp_path):
    scheduler = flask_process(["scheduler"], {**os.environ, **test_env}, tmp_path / "scheduler.log")
    try:
        wait_until(lambda: "Scheduler started" in (tmp_path / "scheduler.log").read_text(), what="scheduler started")
        # Its first passes (all four jobs run at start) finish before it exits: allow for a busy machine.
        code, _ = terminate_and_time(scheduler, timeout=60)
    finally:
        if scheduler.poll() is None:
            os.killpg(scheduler.pid, signal.SIGKILL)
    assert code == 0
    assert "Scheduler has been shut down" in (tmp_path / "scheduler.log").read_text()
