"""Servers a fault test may stop and start: a private redis-server, a private PostgreSQL, and a whole Herald
(gunicorn gevent web + an RQ worker) pointed at them. Nothing here is shared with the rest of the suite, so
killing a server hurts no other test.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from app.embedded_redis import start_redis_server
from tests.conftest import PROJECT_ROOT, free_port, kill_worker, wait_for_port


class PrivateRedis:
    """redis-server on a free port in a temporary folder; ``stop`` is a SIGKILL (nothing persisted, as in prod)."""

    def __init__(self, directory: Path):
        self.directory, self.port, self.process = directory, free_port(), None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.process = start_redis_server(self.directory, port=self.port)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


def postgres_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """initdb into a temporary folder and run it on a free loopback port (as the ``postgres`` user when root).

    ``stop`` is ``pg_ctl stop -m immediate``: the server dies as in a crash, and recovers from its WAL on start.
    """

    def __init__(self):
        self.bin = postgres_binaries()
        self.directory = Path(tempfile.mkdtemp(prefix="herald-pg-"))
        self.data, self.port = self.directory / "data", free_port()
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_owner, str(self.bin / tool), *args],
            check=True,
            timeout=60,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self) -> PrivatePostgres:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.directory, ignore_errors=True)


PREPARE = """
from flask_migrate import upgrade
from wsgi import app
from app.api.keys import create_api_key
with app.app_context():
    upgrade(revision="heads")
    print(create_api_key("fault-test", rate_limit="100000/minute")[1])
"""

# The scheduler's re-drive (jobs/maintenance.py), every 5 s instead of every 30 s and for work idle 10 s instead of
# 10 minutes: the test knows its outage lost jobs (a restarted Redis keeps nothing), an operator waits 10 minutes.
REAPER_LOOP = """
import time
from datetime import timedelta
from wsgi import app
from app.models.types import utcnow
from jobs.maintenance import redrive_stuck_work
while True:
    with app.app_context():
        try:
            print(redrive_stuck_work(utcnow(), app.config["DISPATCH_LEASE_SECONDS"], stale_after=timedelta(seconds=10)),
                  flush=True)
        except Exception as error:
            print("reaper pass failed:", type(error).__name__, flush=True)
    time.sleep(5)
"""


WORKERS = 2


class Herald:
    """Herald as it runs in production: migrated database, gunicorn -k gevent web, RQ workers."""

    def __init__(self, directory: Path, database_url: str, redis_url: str, smtp_url: str):
        self.directory = directory
        self.log_path = directory / "herald.log"  # web and worker
        self.port = free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SMTP_URL": smtp_url,
            "HERALD_REDIS_PREFIX": "herald-fault",
            "SECRET_KEY": "fault-test-secret-" + "x" * 16,
            "HERALD_INSTANCE_PATH": str(directory / "instance"),
            "HERALD_BASE_URL": f"http://127.0.0.1:{self.port}",
            "HERALD_DISPATCH_LEASE_SECONDS": "10",
            "HERALD_TRACK_CLICKS": "false",
        }
        self.web = self.reaper = None
        self.workers: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> str:
        """Migrate the database and return a new API key with a limit the load never reaches (one process: fast)."""
        result = subprocess.run(
            [sys.executable, "-c", PREPARE], cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode:
            raise RuntimeError(f"preparing the database failed:\n{result.stderr[-3000:]}")
        return result.stdout.strip().splitlines()[-1]

    def start(self) -> Herald:
        self.log = open(self.log_path, "a")
        self.web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                "gevent",
                "-w",
                "1",
                "--worker-connections",
                "200",
                "-b",
                f"127.0.0.1:{self.port}",
                "--timeout",
                "30",
                "wsgi:app",
            ],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        # Each in its own process group, as conftest's start_worker: stop_worker ends RQ's forked scheduler with it.
        self.workers = [
            subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for _ in range(WORKERS)
        ]
        queues = redis.Redis.from_url(self.env["REDIS_URL"])
        registered = wait_until(lambda: len(queues.keys("rq:worker:*")) == WORKERS or self.workers_exited(), timeout=60)
        if not registered or self.workers_exited():
            raise RuntimeError(f"the RQ workers did not start: {self.log_path.read_text()[-3000:]}")
        try:
            wait_for_port(self.port, timeout=60, process=self.web)
        except RuntimeError:
            raise RuntimeError(self.log_path.read_text()[-3000:]) from None
        return self

    def workers_exited(self) -> list[int]:
        return [worker.returncode for worker in self.workers if worker.poll() is not None]

    def start_reaper(self) -> None:
        self.reaper = subprocess.Popen(
            [sys.executable, "-c", REAPER_LOOP],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.reaper is not None:
            self.reaper.kill()
            self.reaper.wait(10)
        for worker in self.workers:
            kill_worker(worker)  # the test has its answer; a warm shutdown would only add seconds
        if self.web is not None:
            self.web.terminate()
            try:
                self.web.wait(10)
            except subprocess.TimeoutExpired:
                self.web.kill()
            self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text()


def wait_until(condition, timeout: float, every: float = 0.25):
    """Poll ``condition`` until it returns something truthy, or the timeout passes (then its last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def put_user(base_url: str, key: str, user_id: str, email: str) -> None:
    response = httpx.put(
        f"{base_url}/v1/users/{user_id}", json={"email": email}, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code in (200, 201), response.text
