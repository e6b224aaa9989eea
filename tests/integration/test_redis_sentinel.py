"""REDIS_URL=redis+sentinel://…: Herald follows a primary failover, keeps accepting, and loses nothing.

A real primary, a replica and a sentinel on loopback; Herald's web (`flask web`)
and a worker reach Redis only through the sentinel. Mid-load the primary is
SIGKILLed; the sentinel promotes the replica. Every request is answered 202
(or 503 with Retry-After, never 500), accepts never stop for longer than the
README's window, an inbox stream keeps receiving through the new primary, and
every accepted notification is delivered -- those accepted while Redis was
away, or whose jobs died with the old primary, by the reaper.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import timedelta

import httpx
import pytest
import redis
from rq import Queue
from sqlalchemy import func, select

from app.config import QUEUE_NAMES
from app.embedded_redis import start_redis_server
from app.extensions import db
from app.models import Delivery, Notification
from app.models.types import utcnow
from app.redis_client import connect
from jobs.maintenance import STALE_AFTER, redrive_stuck_work
from tests.conftest import free_port, kill_worker, start_worker
from tests.factories import make_recipient
from tests.integration.test_stream import open_raw_stream, read_socket_until
from tests.processes import inbox_cookie, start_web

pytestmark = pytest.mark.slow

SERVICE = "herald"
OUTAGE_WINDOW = 5.0  # README: "Redis Sentinel": the longest an accept may wait out a failover
LOAD_THREADS = 3
PAUSE = 0.03  # between one thread's requests: steady load that one worker can deliver in seconds, on SQLite too
RESUMED_AFTER = 3.0  # seconds after the promotion: by then the web process has found the new primary


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except redis.ConnectionError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout}s")


@pytest.fixture
def sentinel(tmp_path):
    """Primary + replica + one sentinel (quorum 1, primary down after 1 s), all on free loopback ports."""
    primary_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    primary = start_redis_server(tmp_path / "primary", port=primary_port)
    redis.Redis(port=primary_port).config_set("repl-diskless-sync-delay", 0)  # the replica syncs at once, not in 5 s
    (tmp_path / "replica").mkdir()
    replica = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(replica_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path / "replica"),
            "--replicaof",
            "127.0.0.1",
            str(primary_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(
        lambda: redis.Redis(port=replica_port).info("replication")["master_link_status"] == "up",
        20,
        "the replica's link to the primary",
    )
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\nsentinel failover-timeout {SERVICE} 10000\n"
    )
    watcher = subprocess.Popen(
        ["redis-server", str(config), "--sentinel"],
        stdout=open(tmp_path / "sentinel.log", "w"),
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(port=sentinel_port)
    wait_until(
        lambda: [r["flags"] for r in client.sentinel_slaves(SERVICE)] == ["slave"],
        20,
        "the sentinel knowing the replica",
    )
    yield {
        "url": f"redis+sentinel://127.0.0.1:{sentinel_port}/{SERVICE}/0",
        "client": client,
        "primary": primary,
        "replica_port": replica_port,
    }
    for process in (watcher, replica, primary):
        process.kill()
        process.wait(10)


class Load:
    """Threads posting notifications until stopped; every answer kept with the time it came back."""

    def __init__(self, base_url: str, api_key: str, user_id: str):
        self.base_url, self.api_key, self.user_id = base_url, api_key, user_id
        self.answers: list[tuple[float, int, str | None, str | None]] = []  # (time, status, Retry-After, id)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(LOAD_THREADS)]

    def _run(self) -> None:
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {self.api_key}"}) as http:
            while not self._stop.is_set():
                response = http.post(
                    f"{self.base_url}/v1/notifications",
                    json={
                        "user_id": self.user_id,
                        "type": "transactional",
                        "channels": ["in_app"],
                        "title": "Payment received",
                        "body": "We got it",
                    },
                )
                identifier = response.json().get("id") if response.status_code == 202 else None
                self.answers.append(
                    (time.monotonic(), response.status_code, response.headers.get("Retry-After"), identifier)
                )
                self._stop.wait(PAUSE)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def accepted(self, after: float = 0.0) -> list[str]:
        return [identifier for at, status, _, identifier in self.answers if status == 202 and at > after]


def delivered(notification_ids: list[str]) -> int:
    db.session.expire_all()
    return db.session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.notification_id.in_(notification_ids), Delivery.channel == "in_app", Delivery.status == "DELIVERED"
        )
    )


def longest_wait_for_a_202(answers, start: float, end: float) -> float:
    times = sorted([start, end] + [at for at, status, _, _ in answers if status == 202 and start <= at <= end])
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def stream_follows_the_failover(stream, base: str, api_key: str, timeout: float = 45.0) -> int:
    """Send probe notifications until one arrives on ``stream`` as its own event; returns how many were sent."""
    deadline = time.monotonic() + timeout
    sent = 0
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {api_key}"}) as http:
        while True:
            body = {"user_id": "ana", "type": "transactional", "channels": ["in_app"], "title": "Probe", "body": "p"}
            response = http.post(f"{base}/v1/notifications", json=body)
            assert response.status_code == 202, response.text
            sent += 1
            try:
                read_socket_until(stream, f"id:{response.json()['id']}".encode(), timeout=10)
                return sent
            except (AssertionError, TimeoutError):  # not on the stream yet, or no byte at all for a while
                if time.monotonic() > deadline:
                    raise


def test_a_primary_failover_mid_load_keeps_accepting_and_loses_nothing(app, test_env, api_key, sentinel, tmp_path):
    env = {**os.environ, **test_env, "REDIS_URL": sentinel["url"]}
    make_recipient(external_id="ana")
    worker = start_worker([], env)
    web, port = start_web(env, tmp_path / "web.log")
    base = f"http://127.0.0.1:{port}"
    stream = open_raw_stream(port, inbox_cookie(base, app.config["INBOX_SECRET"], "ana"))
    try:
        read_socket_until(stream, b"retry: 2000")
        with Load(base, api_key, "ana") as load:
            wait_until(lambda: len(load.accepted()) >= 20, 30, "20 accepts before the failover")
            old_primary = sentinel["client"].sentinel_get_master_addr_by_name(SERVICE)
            sentinel["primary"].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            wait_until(
                lambda: sentinel["client"].sentinel_get_master_addr_by_name(SERVICE) != old_primary,
                30,
                "the sentinel's failover",
            )
            promoted_at = time.monotonic()
            wait_until(
                lambda: len(load.accepted(after=promoted_at + RESUMED_AFTER)) >= 20, 30, "20 accepts after the failover"
            )
        statuses = {status for _, status, _, _ in load.answers}
        assert statuses <= {202, 503}, f"answers: {statuses}"
        assert all(retry for _, status, retry, _ in load.answers if status == 503), "a 503 always says Retry-After"
        longest = longest_wait_for_a_202(load.answers, killed_at, promoted_at + RESUMED_AFTER)
        assert longest <= OUTAGE_WINDOW, f"no accept for {longest:.1f} s during the failover"

        # The stream's hub follows the failover: an event published through the new primary reaches it. One
        # published while the hub was still reconnecting reaches it as a `resync` (the page reloads), so probe
        # until one arrives as itself.
        probes = stream_follows_the_failover(stream, base, api_key)

        # Accepts after the failover are queued again at once, through the new primary: no reaper needed.
        resumed = load.accepted(after=promoted_at + RESUMED_AFTER)
        wait_until(lambda: delivered(resumed) == len(resumed), 60, "accepts after the failover delivered by the worker")

        # Once the worker has emptied the queues, what is still unrouted was accepted while Redis was away (left to
        # the reaper), enqueued on a primary that died before its replica had the job, or in the worker's hands when
        # Redis went. The reaper finds those once they are stale: run it as the scheduler would, 10 minutes on.
        queues = [Queue(name, connection=connect(sentinel["url"])) for name in QUEUE_NAMES]
        wait_until(lambda: not any(q.count for q in queues), 120, "the queues drained")
        app.extensions["herald_redis"], saved = connect(sentinel["url"]), app.extensions["herald_redis"]
        try:
            with app.app_context():
                redriven = redrive_stuck_work(utcnow() + STALE_AFTER + timedelta(minutes=1), lease_seconds=120)
        finally:
            app.extensions["herald_redis"] = saved
        accepted = load.accepted()
        wait_until(lambda: delivered(accepted) == len(accepted), 120, "every accepted notification delivered")
        assert db.session.scalar(select(func.count()).select_from(Notification)) == len(accepted) + probes
    finally:
        stream.close()
        for process in (web, worker):
            kill_worker(process)
    print(
        f"failover: primary killed, new primary after {promoted_at - killed_at:.1f} s; longest wait for an "
        f"accept {longest:.2f} s; {len(accepted)} accepted, {statuses}; "
        f"the reaper routed {redriven['notifications']}"
    )


def test_every_client_reaches_the_primary_through_the_sentinel(sentinel):
    """The app's client, RQ's and the limiter's storage resolve the primary, never the replica."""
    from flask import Flask
    from flask_limiter import Limiter

    from app.redis_client import limits_storage

    client = connect(sentinel["url"])
    client.set("herald-test:written", "1")
    assert client.connection_pool.get_master_address()[1] != sentinel["replica_port"]
    site = Flask(__name__)
    site.config["RATELIMIT_STORAGE_URI"], site.config["RATELIMIT_STORAGE_OPTIONS"] = limits_storage(
        sentinel["url"], {"socket_timeout": 1}
    )
    limiter = Limiter(key_func=lambda: "caller", app=site)
    site.add_url_rule("/", "index", limiter.limit("2/minute")(lambda: "ok"))
    browser = site.test_client()
    assert [browser.get("/").status_code for _ in range(3)] == [200, 200, 429]
    assert any(b"caller" in name for name in client.keys("*")), "the limiter counted on the primary, in db 0"
