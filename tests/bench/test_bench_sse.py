"""Many open inboxes on ONE gevent web process: Herald's hub against plain Flask-SSE, in the same run.

Each client is a raw loopback socket held open by one asyncio load generator
(bounded connect concurrency). Every client gets its own user channel; one
pipelined burst publishes an event to each, stamped with the send time, and
each client records when its event arrived. Reported: delivery latency
p50/p99 and Redis connections while the streams are held. `make bench` runs
5,000 clients; the default run keeps a smoke size.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import current_app
from sqlalchemy import insert

from app.extensions import db
from app.models import Recipient
from app.realtime.hub import process_label
from app.realtime.publish import publish, user_channel
from app.realtime.stream import client_count_key, hub_client_name
from app.redis_client import get_redis, key
from tests.bench.harness import machine, summary
from tests.conftest import PROJECT_ROOT, free_port, wait_for_port

CONNECT_CONCURRENCY = 200


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        pytest.skip(f"needs {wanted} file descriptors, the hard limit is {hard}")


@contextmanager
def gevent_server(env: dict, app_path: str, clients: int):
    """One gunicorn gevent worker; it inherits this process's raised RLIMIT_NOFILE."""
    port = free_port()
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
            str(clients + 200),
            "--backlog",
            "4096",
            "--graceful-timeout",
            "1",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            app_path,
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(20)


def redis_port() -> int:
    return int(get_redis().connection_pool.connection_kwargs.get("port", 6379))


def redis_connections_of(master_pid: int, port: int) -> int:
    """TCP connections to Redis held by the gunicorn master and its workers (Redis is shared, so count per process)."""
    pids = [master_pid]
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    wanted, count = f"{port:04X}", 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port, state, inode = fields[2].rsplit(":", 1)[1], fields[3], fields[9]
            if remote_port == wanted and state == "01" and inode in inodes:
                count += 1
    return count


class Load:
    """Hold ``len(requests)`` SSE streams and time the arrival of each one's first data event."""

    def __init__(self, port: int, server_pid: int, requests: list[bytes]):
        self.port, self.server_pid, self.requests = port, server_pid, requests
        self.redis_port = redis_port()
        self.arrivals: list[float] = []
        self.opened = 0
        self.failed = 0

    async def client(self, request: bytes, gate: asyncio.Semaphore, done: asyncio.Event):
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(request)
                await writer.drain()
            except OSError:
                self.failed += 1
                return
        self.opened += 1
        try:
            while not done.is_set():
                line = await reader.readline()
                if not line:
                    self.failed += 1
                    return
                if line.startswith(b"data:"):
                    sent = json.loads(line[5:])["sent"]
                    self.arrivals.append(time.time() - sent)
                    return
        finally:
            writer.close()

    async def run(self, subscribed, publish_all, expected_wait: float = 60.0):
        gate, done = asyncio.Semaphore(CONNECT_CONCURRENCY), asyncio.Event()
        tasks = [asyncio.create_task(self.client(r, gate, done)) for r in self.requests]
        deadline = time.monotonic() + expected_wait
        while not subscribed() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        held = {"redis_connections": redis_connections_of(self.server_pid, self.redis_port)}
        publish_all()
        await asyncio.wait(tasks, timeout=expected_wait)
        done.set()
        for task in tasks:
            task.cancel()
        return held


def streams_held_by(redis_conn, master_pid: int) -> int:
    workers = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    hostname = process_label().rsplit(":", 1)[0]
    return sum(int(redis_conn.get(client_count_key(f"{hostname}:{pid}")) or 0) for pid in workers)


def run_load(load: Load, subscribed, publish_all) -> dict:
    """asyncio.run in a thread of its own: browser tests earlier in the session leave an event loop on this one."""
    app = current_app._get_current_object()

    def run() -> dict:
        with app.app_context():
            return asyncio.run(load.run(subscribed, publish_all))

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def hub_subscriptions(name: str) -> int:
    return len([c for c in get_redis().client_list() if c.get("name") == name])


def herald_bench(env: dict, clients: int) -> dict:
    app = current_app._get_current_object()
    db.session.execute(
        insert(Recipient), [{"external_id": f"sse-{n}", "locale": "en", "attributes": {}} for n in range(clients)]
    )
    db.session.commit()
    ids = [r for (r,) in db.session.execute(db.select(Recipient.id).order_by(Recipient.id))]
    serializer = app.session_interface.get_signing_serializer(app)
    requests = [
        (
            f"GET /inbox/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nCookie: session="
            f"{serializer.dumps({'inbox_recipient_id': rid, 'inbox_external_id': f'sse-{n}'})}\r\n\r\n"
        ).encode()
        for n, rid in enumerate(ids)
    ]
    redis_conn = get_redis()
    hub_name = hub_client_name(app.config["REDIS_PREFIX"])
    hubs_before = hub_subscriptions(hub_name)  # this test process's own hub, if earlier tests opened streams here

    def subscribed():
        return streams_held_by(redis_conn, load.server_pid) >= clients

    def publish_all():
        with redis_conn.pipeline(transaction=False) as pipe:
            now = time.time()
            for rid in ids:
                publish({"sent": now}, type="notification", id=f"{rid:032d}", channel=user_channel(rid), pipeline=pipe)
            pipe.execute()

    with gevent_server({**env, "HERALD_SSE_HEARTBEAT_SECONDS": "15"}, "wsgi:app", clients) as (port, pid):
        load = Load(port, pid, requests)
        held = run_load(load, subscribed, publish_all)
        hubs = hub_subscriptions(hub_name) - hubs_before
    return {"load": load, "redis_connections": held["redis_connections"], "hub_connections": hubs}


def flask_sse_bench(env: dict, clients: int) -> dict:
    channels = [key("bench-flask-sse", n) for n in range(clients)]
    requests = [
        f"GET /stream?channel={c} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
        for c in channels
    ]
    redis_conn = get_redis()

    def subscribed():
        counted = 0
        for start in range(0, clients, 1000):
            counted += sum(n for _c, n in redis_conn.pubsub_numsub(*channels[start : start + 1000]))
        return counted >= clients

    def publish_all():
        with redis_conn.pipeline(transaction=False) as pipe:
            now = time.time()
            for c in channels:
                publish({"sent": now}, type="notification", channel=c, pipeline=pipe)
            pipe.execute()

    with gevent_server(env, "tests.bench.flask_sse_app:app", clients) as (port, pid):
        load = Load(port, pid, requests)
        held = run_load(load, subscribed, publish_all)
    return {"load": load, "redis_connections": held["redis_connections"]}


def sse_benchmark(bench_env: dict, clients: int) -> dict:
    raise_fd_limit(2 * clients + 1000)
    results = {"herald": herald_bench(bench_env, clients), "flask-sse": flask_sse_bench(bench_env, clients)}
    for name, result in results.items():
        load = result["load"]
        extra = f", hub subscriptions {result['hub_connections']}" if "hub_connections" in result else ""
        print(
            f"\n[bench] SSE fan-out, {name}, 1 gevent web process: {load.opened}/{clients} streams held, "
            f"{len(load.arrivals)} events received, {load.failed} failed; publish->browser {summary(load.arrivals or [0.0])}; "
            f"Redis connections of the web process while held: {result['redis_connections']}{extra} ({machine()})"
        )
    return results


def test_sse_fan_out_smoke(bench_env):
    results = sse_benchmark(bench_env, clients=200)
    herald = results["herald"]
    assert len(herald["load"].arrivals) == 200 and herald["hub_connections"] == 1
    assert herald["redis_connections"] <= 5, "one web process must not hold a Redis connection per stream"
    assert results["flask-sse"]["redis_connections"] >= 200


@pytest.mark.bench
def test_sse_fan_out_full(bench_env):
    results = sse_benchmark(bench_env, clients=5000)
    assert len(results["herald"]["load"].arrivals) == 5000
