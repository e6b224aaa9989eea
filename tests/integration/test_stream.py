"""GET /inbox/stream: session-derived channel, event ids, heartbeats, replay, one Redis subscription per process.

Most tests read the stream through Flask's test client in this process (its
hub is this process's hub); the disconnect test runs Herald under
``gunicorn -k gevent`` because only a real socket can go away.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from app.inbox.auth import user_token
from app.models.types import utcnow
from app.realtime.hub import process_label
from app.realtime.publish import publish_to_user, user_channel
from app.realtime.stream import client_count_key, get_hub, hub_client_name
from app.redis_client import get_redis
from tests.conftest import PROJECT_ROOT, free_port, wait_for_port
from tests.factories import make_notification, make_recipient


@pytest.fixture
def fast_heartbeat(app):
    saved = app.config["SSE_HEARTBEAT_SECONDS"]
    app.config["SSE_HEARTBEAT_SECONDS"] = 0.1
    yield
    app.config["SSE_HEARTBEAT_SECONDS"] = saved


def signed_in_client(app, user_id: str):
    client = app.test_client()
    assert (
        client.get(f"/inbox?user={user_id}&token={user_token(app.config['INBOX_SECRET'], user_id)}").status_code == 303
    )
    return client


class Stream:
    """An open stream read chunk by chunk; every read returns within a heartbeat."""

    def __init__(self, client, path="/inbox/stream", headers=None):
        self.response = client.get(path, headers=headers or {}, buffered=False)
        self.chunks = iter(self.response.response)

    def read_until(self, predicate, timeout: float = 5.0) -> list[str]:
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = next(self.chunks)
            seen.append(chunk.decode() if isinstance(chunk, bytes) else chunk)
            if predicate(seen[-1]):
                return seen
        raise AssertionError(f"not seen within {timeout}s; got {seen[-5:]}")

    def events(self, count: int, timeout: float = 5.0) -> list[str]:
        found = []
        self.read_until(
            lambda chunk: (
                (found.append(chunk) if chunk.startswith(("event:", "data:")) else None) or len(found) >= count
            ),
            timeout,
        )
        return found

    def close(self):
        self.response.close()


def test_stream_needs_an_inbox_session(client):
    assert client.get("/inbox/stream").status_code == 401


def test_a_channel_named_in_the_request_is_ignored_the_session_decides(app, fast_heartbeat):
    ana, bob = make_recipient(external_id="ana"), make_recipient(external_id="bob")
    stream = Stream(signed_in_client(app, "ana"), f"/inbox/stream?channel={user_channel(bob.id)}&user=bob")
    try:
        publish_to_user(bob.id, "notification", {"id": "b" * 32, "title": "Bob's secret"}, event_id="b" * 32)
        publish_to_user(ana.id, "notification", {"id": "a" * 32, "title": "For Ana"}, event_id="a" * 32)
        [event] = stream.events(1)
        assert "For Ana" in event and "Bob" not in event
    finally:
        stream.close()


def test_events_keep_flask_sse_format_with_their_ids_and_heartbeats_flow(app, fast_heartbeat):
    ana = make_recipient(external_id="ana")
    stream = Stream(signed_in_client(app, "ana"))
    try:
        first = stream.read_until(lambda chunk: True)
        assert first == ["retry: 2000\n\n"]
        assert stream.read_until(lambda chunk: chunk.startswith(":"))[-1] == ": keepalive\n\n"
        publish_to_user(ana.id, "notification", {"id": "n" * 32, "title": "Hi"}, event_id="n" * 32)
        [event] = stream.events(1)
        assert event == f"event:notification\ndata:{json.dumps({'id': 'n' * 32, 'title': 'Hi'})}\nid:{'n' * 32}\n\n"
        assert (
            stream.response.mimetype == "text/event-stream" and stream.response.headers["Cache-Control"] == "no-cache"
        )
    finally:
        stream.close()


def test_reconnect_with_last_event_id_replays_what_arrived_after_it_from_the_database(app, fast_heartbeat):
    ana = make_recipient(external_id="ana")
    now = utcnow()
    seen = make_notification(ana, title="Seen", inbox_at=now - timedelta(minutes=30))
    missed = [make_notification(ana, title=f"Missed {n}", inbox_at=now - timedelta(minutes=20 - n)) for n in range(3)]
    make_notification(ana, title="Archived", inbox_at=now - timedelta(minutes=5), archived_at=now)
    make_notification(ana, title="Not in the inbox yet")
    stream = Stream(signed_in_client(app, "ana"), headers={"Last-Event-ID": seen.id})
    try:
        events = stream.events(3)
        assert [e.split("id:")[1].strip() for e in events] == [n.id for n in missed]
        assert all(e.startswith("event:notification\n") for e in events)
    finally:
        stream.close()


def test_the_query_string_can_carry_the_last_event_id_too(app, fast_heartbeat):
    ana = make_recipient(external_id="ana")
    seen = make_notification(ana, inbox_at=utcnow() - timedelta(minutes=10))
    missed = make_notification(ana, inbox_at=utcnow())
    stream = Stream(signed_in_client(app, "ana"), f"/inbox/stream?last_event_id={seen.id}")
    try:
        assert f"id:{missed.id}" in stream.events(1)[0]
    finally:
        stream.close()


def test_an_unknown_or_foreign_last_event_id_asks_the_page_to_resync_and_leaks_nothing(app, fast_heartbeat):
    make_recipient(external_id="ana")
    bob = make_recipient(external_id="bob")
    bobs = make_notification(bob, title="Bob's secret", inbox_at=utcnow() - timedelta(minutes=5))
    make_notification(bob, title="Bob's later secret", inbox_at=utcnow())
    for last_id in (bobs.id, "f" * 32):
        stream = Stream(signed_in_client(app, "ana"), headers={"Last-Event-ID": last_id})
        try:
            [event] = stream.events(1)
            assert event.startswith("event:resync\n") and "secret" not in event
        finally:
            stream.close()


def test_many_streams_share_one_redis_subscription_and_each_gets_only_its_own(app, fast_heartbeat):
    recipients = [make_recipient(external_id=f"user-{n}") for n in range(12)]
    streams = [Stream(signed_in_client(app, r.external_id)) for r in recipients]
    try:
        name = hub_client_name(app.config["REDIS_PREFIX"])
        hub_connections = [c for c in get_redis().client_list() if c.get("name") == name]
        assert len(hub_connections) == 1 and hub_connections[0]["psub"] == "1"
        assert get_hub().client_count >= len(streams)
        for r in recipients:
            publish_to_user(r.id, "notification", {"id": f"{r.id:032d}", "for": r.external_id}, event_id=f"{r.id:032d}")
        for r, stream in zip(recipients, streams, strict=True):
            [event] = stream.events(1)
            assert f'"for": "{r.external_id}"' in event
    finally:
        for stream in streams:
            stream.close()


def test_closing_a_stream_leaves_the_hub(app, fast_heartbeat):
    make_recipient(external_id="ana")
    before = get_hub().client_count if "herald_sse_hub" in app.extensions else 0
    stream = Stream(signed_in_client(app, "ana"))
    assert get_hub().client_count == before + 1
    stream.close()
    assert get_hub().client_count == before


@pytest.fixture
def gevent_server(app, test_env, tmp_path):
    """Herald under gunicorn -k gevent with a 0.3 s heartbeat, so a vanished client is noticed quickly."""
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "w")
    env = {**os.environ, **test_env, "HERALD_SSE_HEARTBEAT_SECONDS": "0.3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process=process)
        yield f"http://127.0.0.1:{port}", port, process.pid
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def open_raw_stream(port: int, cookie: str, last_event_id: str | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    sock.sendall(
        f"GET /inbox/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n{extra}\r\n".encode()
    )
    sock.settimeout(15)
    return sock


def read_socket_until(sock: socket.socket, needle: bytes, timeout: float = 15.0) -> bytes:
    received = b""
    deadline = time.monotonic() + timeout
    while needle not in received and time.monotonic() < deadline:
        received += sock.recv(65536)
    assert needle in received, received[-500:]
    return received


def streams_held_by(redis_conn, master_pid: int) -> int:
    """What the gunicorn worker's hub reports (other processes on this Redis report under their own keys)."""
    workers = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    hostname = process_label().rsplit(":", 1)[0]
    return sum(int(redis_conn.get(client_count_key(f"{hostname}:{pid}")) or 0) for pid in workers)


def local_tcp_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets process ``pid`` holds (its fds' socket inodes, looked up in /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_for_open_streams(redis_conn, master_pid: int, expected: int, timeout: float = 15.0) -> None:
    """The hub reports its count every half second; closed sockets are noticed at a heartbeat (0.3 s)."""
    deadline = time.monotonic() + timeout
    while streams_held_by(redis_conn, master_pid) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert streams_held_by(redis_conn, master_pid) == expected


def test_under_gevent_a_client_that_vanished_is_dropped_at_the_next_heartbeat(app, gevent_server):
    base, port, master_pid = gevent_server
    ana = make_recipient(external_id="ana")
    # The worker's first request (imports, first connections) took over httpx's default 5 s once under CI load.
    signin = httpx.get(f"{base}/inbox?user=ana&token={user_token(app.config['INBOX_SECRET'], 'ana')}", timeout=30)
    cookie = "session=" + signin.cookies["session"]
    redis_conn = get_redis()
    sockets = [open_raw_stream(port, cookie) for _ in range(3)]
    for sock in sockets:
        read_socket_until(sock, b"retry: 2000")
        read_socket_until(sock, b": keepalive")
    wait_for_open_streams(redis_conn, master_pid, 3)

    publish_to_user(ana.id, "notification", {"id": "x" * 32}, event_id="x" * 32)
    assert b"id:" + b"x" * 32 in read_socket_until(sockets[0], b"id:" + b"x" * 32)

    for sock in sockets[:2]:
        sock.close()
    wait_for_open_streams(redis_conn, master_pid, 1)
    name = hub_client_name(app.config["REDIS_PREFIX"])
    worker_ports = local_tcp_ports(int(Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()[0]))
    hub_connections = [
        c
        for c in redis_conn.client_list()
        if c.get("name") == name and int(c["addr"].rsplit(":", 1)[1]) in worker_ports
    ]
    sockets[2].close()
    assert len(hub_connections) == 1, "the gunicorn worker's streams share one hub connection to Redis"
