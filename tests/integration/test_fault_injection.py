"""Stop Redis, then PostgreSQL, under a stream of POST /v1/notifications to a live Herald, and start them again.

Herald runs as in production (gunicorn -k gevent, an RQ worker) against a private redis-server and, for the
database outage, a private PostgreSQL, so killing them hurts no other test. The callers never retry. What must
hold: every 202 is delivered exactly once afterwards (in-app in the database, email at a real SMTP server);
every other answer is a 503 with Retry-After and a JSON error (never a 500); no request hangs.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import free_port
from tests.outage_servers import WORKERS, Herald, PrivatePostgres, PrivateRedis, postgres_binaries, put_user, wait_until
from tests.peers.smtp import SmtpServer

REQUEST_TIMEOUT = 10.0  # a request slower than this counts as hung
MAX_REQUESTS = 3000


@dataclass(frozen=True)
class Answer:
    title: str
    phase: str
    status: int | str  # an HTTP status, or the name of the client error (timeout, reset)
    notification_id: str | None = None
    retry_after: str | None = None
    error_code: str | None = None


class Load:
    """A few callers POSTing notifications, each once, until stopped (at most MAX_REQUESTS in all)."""

    def __init__(self, base_url: str, api_key: str, callers: int = 2, pause: float = 0.2):
        self.base_url, self.api_key, self.callers, self.pause = base_url, api_key, callers, pause
        self.answers: list[Answer] = []
        self.phase = "before"
        self._numbers = itertools.count()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._call, daemon=True) for _ in range(callers)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 5)
        return list(self.answers)

    def _call(self) -> None:
        with httpx.Client(
            base_url=self.base_url, timeout=REQUEST_TIMEOUT, headers={"Authorization": f"Bearer {self.api_key}"}
        ) as client:
            while not self._stop.is_set():
                number = next(self._numbers)
                if number >= MAX_REQUESTS:
                    return
                self.answers.append(self._post(client, f"fault-{number}"))
                time.sleep(self.pause)

    def _post(self, client: httpx.Client, title: str) -> Answer:
        phase = self.phase
        body = {
            "user_id": "ana",
            "type": "transactional",
            "category": "orders",
            "title": title,
            "body": "b",
            "channels": ["in_app", "email"],
        }
        try:
            response = client.post("/v1/notifications", json=body, headers={"Idempotency-Key": title})
        except httpx.HTTPError as error:
            return Answer(title, phase, type(error).__name__)
        payload = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
        return Answer(
            title,
            phase,
            response.status_code,
            payload.get("id"),
            response.headers.get("Retry-After"),
            (payload.get("error") or {}).get("code"),
        )


def delivery_rows(database_url: str) -> list[tuple[str, str, str, str]]:
    """(notification id, title, channel, status) of every delivery, read straight from Herald's database."""
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT n.id, n.title, d.channel, d.status FROM notifications n "
                    "JOIN deliveries d ON d.notification_id = n.id"
                )
            ).all()
    finally:
        engine.dispose()


def all_delivered(database_url: str, smtp: SmtpServer, accepted: dict[str, str]) -> bool:
    done = {(row[0], row[2]) for row in delivery_rows(database_url) if row[3] in ("DELIVERED", "DISPATCHED")}
    emailed = {message["Subject"] for message in smtp.messages}
    return all(
        (nid, "in_app") in done and (nid, "email") in done and title in emailed for title, nid in accepted.items()
    )


def delivery_summary(database_url: str, smtp: SmtpServer, herald: Herald) -> str:
    """What to look at when delivery did not finish in time."""
    rows = delivery_rows(database_url)
    subjects = [message["Subject"] for message in smtp.messages]
    return (
        f"deliveries by (channel, status): {dict(Counter((r[2], r[3]) for r in rows))}; emails: {len(subjects)} "
        f"(e.g. {subjects[:2]}); workers exited: {herald.workers_exited()}"
    )


def assert_each_accepted_delivered(
    database_url: str, smtp: SmtpServer, accepted: dict[str, str], email_repeats_allowed: int = 0
) -> None:
    """In-app exactly once; email once per 202 (a repeat only as the in-flight crash window allows, same Message-ID)."""
    rows = delivery_rows(database_url)
    in_app = Counter(row[0] for row in rows if row[2] == "in_app" and row[3] == "DELIVERED")
    assert all(in_app[nid] == 1 for nid in accepted.values()), "an accepted notification is missing from the inbox"
    emails = Counter(message["Subject"] for message in smtp.messages)
    missing = [title for title in accepted if emails[title] == 0]
    assert not missing, f"{len(missing)} accepted notifications never emailed, e.g. {missing[:3]}"
    repeats = {title: count for title, count in emails.items() if title in accepted and count > 1}
    assert sum(count - 1 for count in repeats.values()) <= email_repeats_allowed, repeats
    for title in repeats:
        assert len({m["Message-ID"] for m in smtp.messages if m["Subject"] == title}) == 1


@pytest.fixture
def smtp():
    server = SmtpServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(tmp_path):
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def suite_database(tmp_path):
    """The suite's configuration: a SQLite file, or a fresh database on TEST_DATABASE_URL's server."""
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        yield f"sqlite:///{tmp_path / 'fault.db'}"
        return
    name = f"herald_fault_{os.getpid()}_{free_port()}"
    admin = create_engine(server.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def start_herald(tmp_path, database_url: str, redis_url: str, smtp: SmtpServer) -> tuple[Herald, str]:
    started = time.monotonic()
    herald = Herald(tmp_path, database_url, redis_url, smtp.url)
    key = herald.prepare()
    herald.start()
    put_user(herald.url, key, "ana", "ana@example.com")
    print(f"Herald up in {time.monotonic() - started:.1f} s")
    return herald, key


def report(answers: list[Answer], delivered_after: float) -> None:
    by_phase = Counter((a.phase, a.status) for a in answers)
    print(f"answers by (phase, status): {dict(by_phase)}; all delivered {delivered_after:.1f} s after the load")


def test_redis_killed_mid_load_every_post_is_accepted_and_delivered_once(tmp_path, redis_server, suite_database, smtp):
    herald, key = start_herald(tmp_path, suite_database, redis_server.url, smtp)
    try:
        load = Load(herald.url, key).start()
        time.sleep(2)
        redis_server.stop()
        load.phase = "redis down"
        time.sleep(1.5)
        health = httpx.get(f"{herald.url}/healthz", timeout=REQUEST_TIMEOUT)
        metrics = httpx.get(f"{herald.url}/metrics", timeout=REQUEST_TIMEOUT).text
        time.sleep(1.5)
        redis_server.start()
        load.phase = "redis back"
        time.sleep(2)
        answers = load.stop()

        assert Counter(a.status for a in answers) == Counter({202: len(answers)})
        assert sum(a.phase == "redis down" for a in answers) >= 10
        assert health.status_code == 200 and health.json() == {
            "status": "degraded: redis",
            "database": "ok",
            "redis": "down",
        }
        assert "herald_rate_limit_fallback_active 1.0" in metrics
        assert "herald_accept_enqueue_deferred_total 0.0" not in metrics

        accepted = {a.title: a.notification_id for a in answers}
        herald.start_reaper()  # Redis lost every queued job with its restart; the re-drive finds them in the database
        load_ended = time.monotonic()
        assert wait_until(lambda: all_delivered(suite_database, smtp, accepted), timeout=45), delivery_summary(
            suite_database, smtp, herald
        )
        report(answers, time.monotonic() - load_ended)
        time.sleep(4)  # a repeat from a re-drive pass (every 3 s) would arrive now
        assert_each_accepted_delivered(suite_database, smtp, accepted)
        log = herald.log_text()
        assert log.count("Redis unreachable") == 1 and log.count("Redis answers again") == 1
        assert "unhandled error" not in log  # app/errors.py's 500 path
    finally:
        herald.stop()


@pytest.mark.skipif(postgres_binaries() is None, reason="needs PostgreSQL's server binaries (initdb, pg_ctl)")
def test_postgres_killed_mid_load_answers_503_and_every_202_is_delivered_once(tmp_path, redis_server, smtp):
    postgres = PrivatePostgres().start()
    herald = None
    try:
        herald, key = start_herald(tmp_path, postgres.url, redis_server.url, smtp)
        load = Load(herald.url, key).start()
        time.sleep(2)
        postgres.stop()
        load.phase = "database down"
        time.sleep(1.5)
        health = httpx.get(f"{herald.url}/healthz", timeout=REQUEST_TIMEOUT)
        time.sleep(1.5)
        postgres.start()
        load.phase = "database back"
        time.sleep(3)
        answers = load.stop()

        statuses = Counter(a.status for a in answers)
        assert set(statuses) <= {202, 503}, statuses
        unavailable = [a for a in answers if a.status == 503]
        assert unavailable and all(
            int(a.retry_after) > 0 and a.error_code == "service_unavailable" for a in unavailable
        )
        assert any(a.status == 202 for a in answers if a.phase == "database back"), "Herald did not recover"
        assert health.status_code == 503 and health.json() == {
            "status": "down: database",
            "database": "down",
            "redis": "ok",
        }

        accepted = {a.title: a.notification_id for a in answers if a.status == 202}
        herald.start_reaper()
        load_ended = time.monotonic()
        assert wait_until(lambda: all_delivered(postgres.url, smtp, accepted), timeout=45), delivery_summary(
            postgres.url, smtp, herald
        )
        report(answers, time.monotonic() - load_ended)
        time.sleep(4)
        # At most the emails in flight when the database died (one per worker) can go again, with the same Message-ID.
        assert_each_accepted_delivered(postgres.url, smtp, accepted, email_repeats_allowed=WORKERS)
        assert "unhandled error" not in herald.log_text()
    finally:
        if herald is not None:
            herald.stop()
        postgres.destroy()
