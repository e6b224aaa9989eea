"""Circuit-breaker state in Redis (app/channels/circuit_store.py) driven by pybreaker's public API, on the suite's Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pybreaker
import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.channels.circuit_store import RedisCircuitStorage, field_key
from app.channels.health import provider_health
from app.redis_client import key
from tests.conftest import free_port


class Boom(Exception):
    pass


def fail():
    raise Boom()


def circuit(storage: RedisCircuitStorage, fail_max: int = 2) -> pybreaker.CircuitBreaker:
    return pybreaker.CircuitBreaker(
        fail_max=fail_max, reset_timeout=60, state_storage=storage, name="peer", throw_new_error_on_trip=False
    )


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def provider_health_of(redis_conn):
    redis_conn.sadd(key("providers"), "peer")
    return provider_health()


def test_a_circuit_opened_by_one_worker_is_open_for_another(ctx, redis_conn):
    first, second = (circuit(RedisCircuitStorage("peer", redis_conn)) for _ in range(2))
    before = datetime.now(UTC)
    with pytest.raises(Boom):
        first.call(fail)
    with pytest.raises(Boom):
        second.call(fail)  # the second consecutive failure, counted in Redis, opens it
    assert first.current_state == second.current_state == pybreaker.STATE_OPEN
    opened_at = RedisCircuitStorage("peer", redis_conn).opened_at
    assert opened_at is not None and before <= opened_at < before + timedelta(seconds=2)  # rounded up, never down
    with pytest.raises(pybreaker.CircuitBreakerError):
        first.call(lambda: "not called while open")
    assert {row["name"]: row["circuit"] for row in provider_health_of(redis_conn)}["peer"] == "open"


def test_a_success_queued_on_a_pipeline_ends_the_failure_streak(ctx, redis_conn):
    storage = RedisCircuitStorage("peer", redis_conn)
    breaker = circuit(storage, fail_max=3)
    for _ in range(2):
        with pytest.raises(Boom):
            breaker.call(fail)
    assert breaker.fail_counter == 2
    pipe = redis_conn.pipeline(transaction=False)
    storage.reset_counter_in(pipe)
    assert breaker.fail_counter == 2  # nothing sent before the caller's pipeline runs
    pipe.execute()
    assert breaker.fail_counter == 0
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breaker.current_state == pybreaker.STATE_CLOSED


def test_the_later_opening_time_wins(ctx, redis_conn):
    storage = RedisCircuitStorage("peer", redis_conn)
    later, earlier = datetime(2026, 6, 1, 12, 0, 5, tzinfo=UTC), datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    storage.opened_at = later
    storage.opened_at = earlier
    assert storage.opened_at == later


def test_keys_keep_the_layout_pybreakers_own_redis_storage_used(ctx, redis_conn):
    ours = RedisCircuitStorage("peer", redis_conn)
    ours.state = pybreaker.STATE_OPEN
    ours.increment_counter()
    theirs = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, redis_conn, namespace=key("breaker", "peer"))
    assert (theirs.state, theirs.counter) == (pybreaker.STATE_OPEN, 1)
    assert redis_conn.get(field_key("peer", "state")) == b"open"


def test_a_lost_state_starts_again_closed(ctx, redis_conn):
    storage = RedisCircuitStorage("peer", redis_conn)
    storage.state = pybreaker.STATE_OPEN
    redis_conn.delete(field_key("peer", "state"))
    assert storage.state == pybreaker.STATE_CLOSED
    assert redis_conn.get(field_key("peer", "state")) == b"closed"


def test_redis_down_reads_as_closed_with_no_failures_and_writes_are_dropped(ctx, redis_conn, caplog):
    storage = RedisCircuitStorage("peer", redis_conn)
    storage.connection = redis_lib.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )  # nothing listens there
    breaker = circuit(storage, fail_max=1)
    assert breaker.current_state == pybreaker.STATE_CLOSED and breaker.fail_counter == 0
    with pytest.raises(Boom):
        breaker.call(fail)  # counting the failure fails quietly; the call's own error still surfaces
    assert storage.opened_at is None
    assert "not updated" in caplog.text
