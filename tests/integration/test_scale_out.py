"""Herald scaled out: two schedulers, two web processes and three workers, one PostgreSQL, one Redis.

Every role is a separate process group, started as the README's production
section starts it. The test shows, in one run: exactly one scheduler is active
and another takes over within the lease when it is SIGKILLed (and runs the
periodic work at once); an in-app event sent through one web process reaches a
stream open on the other; and two hundred emails posted through both web
processes to a real SMTP peer all arrive, none twice, while a worker is
SIGKILLed mid-load.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from sqlalchemy import func, insert, select

from app.embedded_redis import start_redis_server
from app.extensions import db
from app.models import Delivery, Recipient
from tests.conftest import free_port, kill_worker, start_worker
from tests.integration.test_stream import open_raw_stream, read_socket_until
from tests.processes import inbox_cookie, leader_pid, start_scheduler, start_web

pytestmark = pytest.mark.slow

COUNT = 200
KILL_AFTER = 50
DISPATCH_LEASE = 3
SCHEDULER_LEASE = 2.0


@pytest.fixture
def cluster(app, test_env, smtp_server, tmp_path):
    """A private redis-server and every role against it; yields what the test needs to reach and kill them."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("scale-out needs PostgreSQL: several hosts cannot share a SQLite file (set TEST_DATABASE_URL)")
    redis_port = free_port()
    server = start_redis_server(tmp_path / "redis", port=redis_port)
    env = {
        **os.environ,
        **test_env,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "SMTP_URL": smtp_server.url,
        "HERALD_DISPATCH_LEASE_SECONDS": str(DISPATCH_LEASE),
        "HERALD_SCHEDULER_LEASE_SECONDS": str(SCHEDULER_LEASE),
    }
    groups = []
    try:
        schedulers = {}
        for n in (1, 2):
            process = start_scheduler(env, tmp_path / f"scheduler-{n}.log")
            schedulers[process.pid] = process
            groups.append(process)
        # The first worker runs RQ's scheduler (it takes the locks before the others start); the victim is another
        # one. Killing the worker that runs RQ's scheduler delays retries to the reaper's next pass (30 s), which
        # test_crash_window covers.
        workers = [start_worker([], env)]
        groups += workers
        wait_for_rq_scheduler_locks(redis.Redis(port=redis_port))
        workers += [start_worker([], env) for _ in range(2)]
        groups += workers[1:]
        webs = []
        for n in (1, 2):
            process, port = start_web(env, tmp_path / f"web-{n}.log")
            groups.append(process)
            webs.append(f"http://127.0.0.1:{port}")
        yield {
            "redis": redis.Redis(port=redis_port),
            "schedulers": schedulers,
            "workers": workers,
            "webs": webs,
            "logs": lambda: "\n".join(p.read_text()[-1500:] for p in tmp_path.glob("scheduler-*.log")),
        }
    finally:
        for process in groups:
            kill_worker(process)
        server.kill()
        server.wait(10)


def wait_for_rq_scheduler_locks(client: redis.Redis, timeout: float = 30) -> None:
    from app.config import QUEUE_NAMES

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(client.exists(f"rq:scheduler-lock:{name}") for name in QUEUE_NAMES):
            return
        time.sleep(0.1)
    raise AssertionError("no worker took RQ's scheduler locks")


def send(base_url: str, api_key: str, user_id: str, channels: list[str], number: int) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/notifications",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
        json={
            "user_id": user_id,
            "type": "transactional",
            "category": "orders",
            "channels": channels,
            "title": f"Order {number}",
            "body": f"Order {number} has shipped",
        },
    )


def sse_reaches_the_other_web_process(app, api_key: str, webs: list[str]) -> None:
    """A stream open on one web process gets the event of a send accepted by the other, both ways round."""
    for stream_on, send_through, user in ((webs[0], webs[1], "sse-a"), (webs[1], webs[0], "sse-b")):
        cookie = inbox_cookie(stream_on, app.config["INBOX_SECRET"], user)
        sock = open_raw_stream(int(stream_on.rsplit(":", 1)[1]), cookie)
        try:
            read_socket_until(sock, b"retry: 2000")
            response = send(send_through, api_key, user, ["in_app"], 0)
            assert response.status_code == 202, response.text
            read_socket_until(sock, f"id:{response.json()['id']}".encode(), timeout=20)
        finally:
            sock.close()


def delivered_emails() -> int:
    db.session.expire_all()
    return db.session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.channel == "email", Delivery.status == "DISPATCHED")
    )


def test_two_schedulers_two_webs_three_workers_one_leader_failover_sse_across_and_no_duplicate(
    app, api_key, smtp_server, cluster
):
    started = time.monotonic()
    webs, schedulers, prefix = cluster["webs"], cluster["schedulers"], app.config["REDIS_PREFIX"]
    db.session.execute(
        insert(Recipient),
        [
            {
                "external_id": f"buyer-{n}",
                "email": f"buyer{n}@example.com",
                "timezone": "UTC",
                "locale": "en",
                "attributes": {},
            }
            for n in range(COUNT)
        ],
    )
    db.session.commit()

    leader = leader_pid(cluster["redis"], prefix, timeout=30)
    assert leader in schedulers, cluster["logs"]()
    sse_reaches_the_other_web_process(app, api_key, webs)

    smtp_server.handler.rcpt_delay_seconds = 0.01  # the workers spend their time in the provider call
    with ThreadPoolExecutor(12) as pool:
        answers = pool.map(lambda n: send(webs[n % 2], api_key, f"buyer-{n}", ["email"], n).status_code, range(COUNT))
        victim = cluster["workers"][2]
        while len(smtp_server.messages) < KILL_AFTER and time.monotonic() - started < 90:
            time.sleep(0.01)
        kill_worker(victim)
        assert Counter(answers) == {202: COUNT}
    assert len(smtp_server.messages) < COUNT, "the load was over before the worker could be killed"

    # Once the killed worker's job and claim are past the dispatch lease, SIGKILL the active scheduler: the
    # standby takes over within its lease and re-drives them at once (the reaper is periodic work).
    time.sleep(DISPATCH_LEASE + 1.5)
    assert leader_pid(cluster["redis"], prefix, timeout=1) == leader, "the leader kept its lease all along"
    kill_worker(schedulers[leader])
    killed_at = time.monotonic()
    successor = leader_pid(cluster["redis"], prefix, timeout=SCHEDULER_LEASE + 5, not_pid=leader)
    took_over_in = time.monotonic() - killed_at
    assert successor in schedulers and successor != leader, cluster["logs"]()
    assert took_over_in <= SCHEDULER_LEASE + 1.0, f"the standby took over after {took_over_in:.1f} s"

    # A retry the killed worker's RQ scheduler would have moved waits for the reaper's pass (every 30 s, for jobs
    # 5 s overdue): up to ~35 s on a busy machine, so the bound is 75 s (it returns as soon as all are in).
    while delivered_emails() < COUNT and time.monotonic() - killed_at < 75:
        time.sleep(0.2)
    copies = Counter(message["Message-ID"] for message in smtp_server.messages)
    statuses = dict(db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    assert delivered_emails() == COUNT, f"{statuses}; {cluster['redis'].keys('rq:*')}"
    assert len(copies) == COUNT, "every notification arrived as its own message"
    repeats = sum(count - 1 for count in copies.values())
    # SMTP has no idempotency key: only a message in flight at the kill may go again, with the same Message-ID.
    assert repeats <= 1, f"{repeats} messages sent twice"
    assert cluster["logs"]().count("is now the active one") == 2, "one leader at a time: the first, then its successor"
    print(
        f"scale-out: standby active {took_over_in:.1f} s after the SIGKILL; {COUNT} emails, {repeats} repeated; "
        f"{time.monotonic() - started:.0f} s in all"
    )
