"""Every kind of Redis client Herald opens works on a TCP URL and on a unix socket (the embedded Redis of `make run`).

A private redis-server listens on both a free port and a unix socket in a
short temporary folder; each test builds one kind of client the way Herald
builds it and uses it: the app's client (commands, pipelines, pub/sub
publishing), RQ's connection (enqueue and a burst worker), the rate
limiter's storage URI (Flask-Limiter), the SSE hub's subscription and its
client-count reporter. Flask-SSE itself only formats messages in Herald
(``flask_sse.Message``); it opens no connection of its own.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import pytest
from flask import Flask
from flask_limiter import Limiter
from flask_sse import Message
from rq import Queue, SimpleWorker

from app.embedded_redis import start_redis_server
from app.realtime.hub import RESYNC, Hub
from app.redis_client import connect, limits_storage
from tests.conftest import free_port


@pytest.fixture(scope="module")
def redis_urls():
    folder = Path(tempfile.mkdtemp(prefix="herald-redis-", dir="/tmp"))
    port, socket_path = free_port(), folder / "redis.sock"
    server = start_redis_server(folder, port=port, unix_socket=socket_path)
    yield {"tcp": f"redis://127.0.0.1:{port}/0", "unix": f"unix://{socket_path}"}
    server.terminate()
    server.wait(10)


@pytest.fixture(params=["tcp", "unix"])
def redis_url(request, redis_urls):
    url = redis_urls[request.param]
    connect(url).flushall()
    return url


def published(url: str, channel: str, data: dict, event_type: str = "notification") -> None:
    """What app.realtime.publish sends: Flask-SSE's stored JSON on the recipient's channel."""
    connect(url).publish(channel, json.dumps(Message(data, type=event_type).to_dict()))


def next_event(subscriber, timeout: float = 3.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = subscriber.next_event(0.1)
        if event is not None:
            return event
    return None


def test_the_apps_client_runs_commands_pipelines_and_publishes(redis_url):
    client = connect(redis_url, socket_keepalive=True)  # a TCP-only option is harmless on a unix socket too
    client.set("herald:check", "1")
    with client.pipeline() as pipe:
        pipe.incr("herald:check").get("herald:check")
        assert pipe.execute() == [2, b"2"]
    assert client.publish("herald:nobody", "x") == 0


def test_rq_enqueues_and_a_worker_runs_the_job(redis_url):
    connection = connect(redis_url)
    job = Queue("low", connection=connection).enqueue("builtins.len", "abcd")

    SimpleWorker([Queue("low", connection=connection)], connection=connection).work(burst=True, with_scheduler=False)

    assert job.get_status(refresh=True) == "finished"
    assert job.return_value() == 4


def test_the_rate_limiter_counts_in_redis_through_its_storage_uri(redis_url):
    site = Flask(__name__)
    site.config["RATELIMIT_STORAGE_URI"], site.config["RATELIMIT_STORAGE_OPTIONS"] = limits_storage(redis_url, {})
    limiter = Limiter(key_func=lambda: "caller", app=site)
    site.add_url_rule("/", "index", limiter.limit("2/minute")(lambda: "ok"))
    browser = site.test_client()

    assert [browser.get("/").status_code for _ in range(3)] == [200, 200, 429]
    assert any(b"caller" in name for name in connect(redis_url).keys("*"))


def test_the_sse_hub_subscribes_fans_out_and_reports_its_streams(redis_url):
    reporter = connect(redis_url, max_connections=1)
    hub = Hub(
        redis_url,
        pattern="t:sse:user:*",
        client_name="t:sse-hub",
        on_count=lambda count: reporter.set("t:clients", count, ex=10),
    )
    try:
        subscriber = hub.subscribe("t:sse:user:7")
        published(redis_url, "t:sse:user:8", {"id": "other"})
        published(redis_url, "t:sse:user:7", {"id": "mine"})

        assert '"id": "mine"' in next_event(subscriber)
        assert "t:sse-hub" in [client["name"] for client in connect(redis_url).client_list()]
        deadline = time.monotonic() + 3
        while connect(redis_url).get("t:clients") != b"1" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert connect(redis_url).get("t:clients") == b"1"
    finally:
        hub.stop()


def test_the_hub_logs_an_unexpected_error_reconnects_and_keeps_streaming(redis_url, caplog):
    failures = []

    def report_once_badly(count):
        if not failures:
            failures.append(count)
            raise ValueError("a bug in the reporter")

    hub = Hub(redis_url, pattern="t:sse:user:*", client_name="t:sse-hub", on_count=report_once_badly)
    try:
        with caplog.at_level(logging.ERROR, logger="app.realtime.hub"):
            subscriber = hub.subscribe("t:sse:user:1")
            assert next_event(subscriber) == RESYNC  # the streams hear that something may have been missed
        assert "SSE hub failed unexpectedly" in caplog.text and "a bug in the reporter" in caplog.text
        hub_alive = hub._thread.is_alive()
        published(redis_url, "t:sse:user:1", {"id": "after"})
        assert '"id": "after"' in next_event(subscriber)
        assert hub_alive
    finally:
        hub.stop()
