"""Shared fixtures: an isolated database and Redis per test run, the app, clients.

Isolation: the suite runs against SQLite by default (a file in a temp folder)
or, when ``TEST_DATABASE_URL`` names a PostgreSQL server, against a database
of its own that it creates and drops. Redis is the machine's server
(``TEST_REDIS_URL``, default 127.0.0.1:6379) on a database number this run
claims with a lock key, plus a key prefix of its own for pub/sub; when no
Redis answers, a private redis-server is started. So two runs can share a
machine.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.embedded_redis import start_redis_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent

RUN_ID = uuid.uuid4().hex[:8]
REDIS_LOCK_KEY = "herald-test-run-lock"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _claim_redis_db(base_url: str) -> str | None:
    """Claim a Redis database number no other test run is using."""
    for number in range(1, 16):
        client = redis_lib.Redis.from_url(base_url, db=number, socket_connect_timeout=1)
        try:
            if client.set(REDIS_LOCK_KEY, RUN_ID, nx=True, ex=6 * 3600):
                client.flushdb()
                client.set(REDIS_LOCK_KEY, RUN_ID, ex=6 * 3600)
                return f"{base_url.rstrip('/')}/{number}"
        except redis_lib.ConnectionError:
            return None
    raise RuntimeError("all Redis databases 1-15 are claimed by other test runs")


@pytest.fixture(scope="session")
def test_env(tmp_path_factory):
    """Point every create_app() and every child process at this run's resources."""
    instance = tmp_path_factory.mktemp("instance")
    private_redis = None
    redis_url = _claim_redis_db(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379"))
    if redis_url is None:
        port = free_port()
        private_redis = start_redis_server(instance / "redis", port=port)
        redis_url = f"redis://127.0.0.1:{port}/0"

    pg_server = os.environ.get("TEST_DATABASE_URL")
    pg_name = None
    if pg_server:
        pg_name = f"herald_test_{RUN_ID}"
        admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
        admin.dispose()
        database_url = make_url(pg_server).set(database=pg_name).render_as_string(hide_password=False)
    else:
        database_url = f"sqlite:///{instance / 'test.db'}"

    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HERALD_REDIS_PREFIX": f"herald-test-{RUN_ID}",
        "SECRET_KEY": secrets.token_hex(32),
        "HERALD_INSTANCE_PATH": str(instance),
        "HERALD_BASE_URL": "http://127.0.0.1:5000",
        # The host page of tests/browser/test_embedded_inbox.py is served from this origin (another port).
        "HERALD_EMBED_ORIGINS": f"http://127.0.0.1:{free_port()}",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    yield env
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    client = redis_lib.Redis.from_url(redis_url)
    try:
        client.flushdb()
    except redis_lib.ConnectionError:
        pass
    if private_redis:
        private_redis.terminate()
    if pg_name:
        admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def app(test_env):
    """One app for the run, its schema built by the real migrations."""
    from flask_migrate import upgrade

    from app import create_app

    application = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": True})
    with application.app_context():
        upgrade(revision="heads")  # parallel feature branches merge into one chain on integration
    return application


@pytest.fixture(autouse=True)
def _clean_state(request):
    """Every test starts with empty tables and an empty Redis database."""
    if "app" not in request.fixturenames:
        yield
        return
    application = request.getfixturevalue("app")
    from app.extensions import db
    from app.redis_client import get_redis

    with application.app_context():
        _truncate_all(db)
        redis_conn = get_redis()
        redis_conn.flushdb()
        redis_conn.set(REDIS_LOCK_KEY, RUN_ID, ex=6 * 3600)
        yield
        db.session.remove()


def _truncate_all(db) -> None:
    """Empty every table. A request the previous test's browser left in flight (a poll, a stream's replay) may hold
    a table the TRUNCATE needs while waiting for one it already took; PostgreSQL then cancels one side as a
    deadlock. That request's answer no longer matters, so the clean-up just tries again."""
    from sqlalchemy.exc import OperationalError

    db.session.remove()
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    for attempt in range(5):
        try:
            with db.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
                else:
                    for table in tables:
                        conn.execute(text(f'DELETE FROM "{table}"'))
            return
        except OperationalError as error:
            if "deadlock" not in str(error).lower() or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def redis_conn(app):
    from app.redis_client import get_redis

    return get_redis()


def start_worker(args: list[str], env: dict) -> subprocess.Popen:
    """``flask worker ARGS`` in a process group of its own: RQ forks its scheduler into a child process, which a
    SIGKILL of the worker alone would orphan, and an orphaned scheduler keeps moving jobs in a later run's Redis."""
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_worker(process: subprocess.Popen) -> None:
    """SIGKILL the worker and everything it started (its scheduler), as a crash of the whole machine would."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(10)


def stop_worker(process: subprocess.Popen, timeout: float = 30) -> None:
    """Warm shutdown of the worker's whole group (SIGTERM: the job in hand finishes), SIGKILL if it takes too long."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        kill_worker(process)


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture(scope="session")
def live_server(app, test_env, tmp_path_factory):
    """Herald under gunicorn with gevent workers, as in production, on a free loopback port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("live") / "gunicorn.log"
    env = {**os.environ, **test_env, "HERALD_BASE_URL": f"http://127.0.0.1:{port}"}
    log = open(log_path, "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gevent",
            "-w",
            "1",
            "--worker-connections",
            "1000",
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "60",
            "wsgi:app",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process=process)
    except RuntimeError:
        process.kill()
        raise RuntimeError(log_path.read_text()[-3000:]) from None
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture
def api_key(app):
    from app.api.keys import create_api_key
    from app.api.scopes import ALL_SCOPES

    _row, plaintext = create_api_key("test-suite", scopes=ALL_SCOPES)
    return plaintext


class ApiClient:
    """The Flask test client with the API key attached, for reading like a caller's code."""

    def __init__(self, client, key: str):
        self.client, self.headers = client, {"Authorization": f"Bearer {key}"}

    def __getattr__(self, method):
        def call(path, headers=None, **kwargs):
            return getattr(self.client, method)(path, headers={**self.headers, **(headers or {})}, **kwargs)

        return call


@pytest.fixture
def api(client, api_key):
    return ApiClient(client, api_key)


@pytest.fixture
def run_jobs(app):
    """Drain the queues in this process with Herald's own worker class (burst mode)."""
    from jobs.worker import build_worker

    def run(include_scheduled: bool = False) -> None:
        from rq import Queue

        from app.config import QUEUE_NAMES
        from app.redis_client import get_redis

        if include_scheduled:
            for name in QUEUE_NAMES:
                queue = Queue(name, connection=get_redis())
                for job_id in queue.scheduled_job_registry.get_job_ids():
                    queue.scheduled_job_registry.remove(job_id)
                    queue.enqueue_job(queue.fetch_job(job_id))
        build_worker().work(burst=True, with_scheduler=False, logging_level="WARNING")

    return run


@pytest.fixture
def smtp_server(app):
    from app.channels import close_all
    from tests.peers.smtp import SmtpServer

    server = SmtpServer(free_port()).start()
    saved = app.config.get("SMTP_URL")
    app.config["SMTP_URL"] = server.url
    yield server
    close_all()
    app.config["SMTP_URL"] = saved
    server.stop()


@pytest.fixture
def recorded_push(monkeypatch):
    """The push adapter replaced by one that records each message it is given and answers "dispatched"."""
    from app.channels import Outcome, Result, base
    from app.channels.push import MobilePush

    sent = []

    class RecordingPush(MobilePush):
        asynchronous = False  # a plain send, through the pipeline's thread pool

        def __init__(self, app_config):
            base.Channel.__init__(self, app_config)  # no APNs/FCM clients

        def send(self, message):
            sent.append(message)
            return Result(Outcome.DISPATCHED, "fake", "m-1")

    monkeypatch.setitem(base._REGISTRY, "push", RecordingPush)
    monkeypatch.setattr(base, "_INSTANCES", {})
    return sent
