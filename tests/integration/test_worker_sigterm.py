"""An idle ``flask worker`` stops on SIGTERM: it is not taken for a Redis outage and started again."""

from __future__ import annotations

import os
import signal
import time

from rq import Worker

from app.redis_client import get_redis
from tests.conftest import kill_worker, start_worker


def idle_workers() -> list[Worker]:
    return [w for w in Worker.all(connection=get_redis()) if w.get_state() == "idle"]


def test_an_idle_worker_exits_on_sigterm(app, test_env):
    process = start_worker([], {**os.environ, **test_env})
    try:
        with app.app_context():
            # Idle, not merely registered: RQ registers a worker before it installs its signal handlers, and a
            # SIGTERM in between meets Python's default action (seen under CI load as an exit by signal 15).
            deadline = time.monotonic() + 30
            while not idle_workers() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert idle_workers(), "the worker never started waiting for jobs"
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        kill_worker(process)
