"""Several ``flask scheduler`` processes, one active: the Redis lease against real Redis and real processes."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select

from app.embedded_redis import start_redis_server
from app.extensions import db
from app.leadership import LEADER_KEY_PARTS, RedisLease
from app.models import ApiKey, IdempotencyKey
from app.models.types import utcnow
from app.redis_client import get_redis, key
from tests.conftest import free_port, kill_worker
from tests.processes import leader_pid, start_scheduler

LEASE = 2.0


def old_idempotency_key(name: str) -> None:
    """A reservation past its 24 h: the purge job (periodic work) deletes it when a leader runs."""
    db.session.add(
        IdempotencyKey(
            api_key_id=db.session.scalar(select(ApiKey.id)),
            key=name,
            request_hash="x",
            notification_id="a" * 32,
            created_at=utcnow() - timedelta(hours=25),
        )
    )
    db.session.commit()


def purged(name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        if db.session.scalar(select(IdempotencyKey.id).where(IdempotencyKey.key == name)) is None:
            return True
        time.sleep(0.1)
    return False


def test_one_lease_holder_renews_and_the_other_gets_it_only_after_release(app):
    client = get_redis()
    name = key("test-lease")
    first, second = RedisLease(client, name, 5, "host:1:a"), RedisLease(client, name, 5, "host:2:b")
    assert first.try_hold() is True
    assert second.try_hold() is False
    assert first.try_hold() is True  # renewed
    client.set(name, "host:3:c", px=5000)  # the lease lapsed and a third process took it
    assert first.try_hold() is False, "a renew is token-checked"
    first.release()
    assert client.get(name) == b"host:3:c", "a release is token-checked too"
    client.delete(name)
    assert second.try_hold() is True
    second.release()
    assert client.get(name) is None


@pytest.mark.slow
def test_two_schedulers_one_active_failover_within_the_lease_after_sigkill(app, client, api_key, test_env, tmp_path):
    env = {**os.environ, **test_env, "HERALD_SCHEDULER_LEASE_SECONDS": str(LEASE)}
    schedulers = {}
    for n in (1, 2):
        process = start_scheduler(env, tmp_path / f"scheduler-{n}.log")
        schedulers[process.pid] = process
    logs = lambda: "\n".join(p.read_text()[-1500:] for p in tmp_path.glob("scheduler-*.log"))  # noqa: E731
    try:
        prefix = test_env["HERALD_REDIS_PREFIX"]
        leader = leader_pid(get_redis(), prefix, timeout=30)
        assert leader in schedulers, logs()
        assert client.get("/metrics").get_data(as_text=True).count("herald_scheduler_leader 1.0") == 1
        time.sleep(LEASE * 1.5)  # several renewals later, still the same one
        assert leader_pid(get_redis(), prefix, timeout=1) == leader
        old_idempotency_key("purged-by-the-next-leader")

        kill_worker(schedulers[leader])  # SIGKILL to its whole group
        killed_at = time.monotonic()
        successor = leader_pid(get_redis(), prefix, timeout=LEASE + 5, not_pid=leader)
        took_over_in = time.monotonic() - killed_at
        assert successor in schedulers and successor != leader, logs()
        assert took_over_in <= LEASE + 1.0, f"took over after {took_over_in:.1f} s"
        print(f"lease {LEASE} s: the standby took over {took_over_in:.2f} s after the SIGKILL")
        assert purged("purged-by-the-next-leader", timeout=10), "the new leader runs the periodic work at once"

        schedulers[successor].send_signal(signal.SIGTERM)
        assert schedulers[successor].wait(15) == 0, logs()
        assert get_redis().get(key(*LEADER_KEY_PARTS)) is None, "a stopped leader hands its lease back"
        assert "herald_scheduler_leader 0.0" in client.get("/metrics").get_data(as_text=True)
        assert logs().count("is now the active one") == 2, logs()
    finally:
        for process in schedulers.values():
            kill_worker(process)


@pytest.mark.slow
def test_a_leader_that_loses_redis_stops_within_the_lease_and_leads_again_when_it_answers(app, test_env, tmp_path):
    """Redis frozen (SIGSTOP: calls hang, they are not refused): the leader must not wait on it past its lease."""
    port = free_port()
    server = start_redis_server(tmp_path / "redis", port=port)
    env = {
        **os.environ,
        **test_env,
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "HERALD_SCHEDULER_LEASE_SECONDS": str(LEASE),
    }
    log_path = tmp_path / "scheduler.log"
    scheduler = start_scheduler(env, log_path)
    try:
        assert leader_pid(redis.Redis(port=port), test_env["HERALD_REDIS_PREFIX"], timeout=30) == scheduler.pid
        server.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        while "lost its lease" not in log_path.read_text() and time.monotonic() - frozen_at < LEASE + 5:
            time.sleep(0.02)
        stepped_down_in = time.monotonic() - frozen_at
        assert "lost its lease" in log_path.read_text(), log_path.read_text()[-2000:]
        assert stepped_down_in < LEASE, f"stood down {stepped_down_in:.1f} s after Redis froze"
        print(f"lease {LEASE} s: the leader stood down {stepped_down_in:.2f} s after Redis froze")
        server.send_signal(signal.SIGCONT)
        while log_path.read_text().count("is now the active one") < 2 and time.monotonic() - frozen_at < 30:
            time.sleep(0.05)
        assert log_path.read_text().count("is now the active one") == 2, log_path.read_text()[-2000:]
    finally:
        server.send_signal(signal.SIGCONT)
        kill_worker(scheduler)
        server.kill()
        server.wait(10)
