"""An idle ``flask worker`` stops on SIGTERM: it is not taken for a Redis outage and started again."""

from __future__ import annotations

import os
import signal
import time

from rq import Worker

from app.redis_client import get_redis
from tests.conftest import kill_worker, start_worker


def test_an_idle_worker_exits_on_sigterm(app, test_env):
    process = start_worker([], {**os.environ, **test_env})
    try:
        with app.app_context():
            deadline = time.monotonic() + 30
            while not Worker.all(connection=get_redis()) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert Worker.all(connection=get_redis()), "the worker never registered"
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        kill_worker(process)
