"""Circuit-breaker state in Redis, shared by every worker: pybreaker's storage interface over keys Herald owns.

pybreaker's own ``CircuitRedisStorage`` keeps its key names and opening time to itself, and Herald needs
both: a successful send ends the failure streak in the same pipelined round trip as the health counters
(:func:`app.channels.guard.count`), the health page reads every provider's state in one round trip, and
:mod:`app.channels.guard` reads when a circuit opened. So this implements pybreaker's public
``CircuitBreakerStorage`` interface, with the key layout ``CircuitRedisStorage`` used
(``<prefix>:breaker:<provider>:pybreaker:<field>``), so circuits recorded before carry over.

As in pybreaker's Redis storage, a Redis error is logged and answered with a closed circuit and no
failures, so a Redis outage never blocks sending on its own.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

import pybreaker
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

from app.redis_client import key

log = logging.getLogger(__name__)

FIELDS = ("state", "fail_counter", "success_counter", "opened_at")


def field_key(provider: str, field: str) -> str:
    """The Redis key of one field of a provider's circuit (``field`` is one of :data:`FIELDS`)."""
    return key("breaker", provider, "pybreaker", field)


class RedisCircuitStorage(pybreaker.CircuitBreakerStorage):
    """One provider's circuit: state, consecutive failures, half-open successes, time it last opened."""

    def __init__(self, provider: str, connection: Redis, fallback_state: str = pybreaker.STATE_CLOSED):
        super().__init__("redis")
        self.connection = connection
        self.fallback_state = fallback_state
        self.keys = {field: field_key(provider, field) for field in FIELDS}
        self._initialize(pybreaker.STATE_CLOSED)

    def _initialize(self, state: str) -> None:
        pipe = self.connection.pipeline(transaction=False)
        pipe.setnx(self.keys["fail_counter"], 0)
        pipe.setnx(self.keys["success_counter"], 0)
        pipe.setnx(self.keys["state"], state)
        pipe.execute()

    @property
    def state(self) -> str:
        try:
            stored = self.connection.get(self.keys["state"])
            if stored is None:  # expired or flushed: start again from the fallback state
                self._initialize(self.fallback_state)
                return self.fallback_state
            return stored.decode()
        except RedisError as error:
            log.warning("circuit state unreadable, taken as %s: %s", self.fallback_state, error)
            return self.fallback_state

    @state.setter
    def state(self, state: str) -> None:
        self._write("set", "state", str(state))

    def increment_counter(self) -> None:
        self._write("incr", "fail_counter")

    def reset_counter(self) -> None:
        self._write("set", "fail_counter", 0)

    def reset_counter_in(self, pipe: Pipeline) -> None:
        """Queue the end of the failure streak on the caller's pipeline (sent with the caller's other commands)."""
        pipe.set(self.keys["fail_counter"], 0)

    def increment_success_counter(self) -> None:
        self._write("incr", "success_counter")

    def reset_success_counter(self) -> None:
        self._write("set", "success_counter", 0)

    @property
    def counter(self) -> int:
        return self._read_int("fail_counter")

    @property
    def success_counter(self) -> int:
        return self._read_int("success_counter")

    @property
    def opened_at(self) -> datetime | None:
        stamp = self._read_int("opened_at")
        return datetime.fromtimestamp(stamp, UTC) if stamp else None

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        """Keep the latest opening time: two workers opening the same circuit leave the later stamp.

        Whole seconds, as pybreaker stores them, but rounded up: a circuit stays open at least its reset
        timeout (rounding down let a 1-second circuit half-open at once when it opened late in a second).
        """
        stamp = math.ceil(now.timestamp())
        name = self.keys["opened_at"]

        def set_if_later(pipe: Pipeline) -> None:
            current = pipe.get(name)
            pipe.multi()
            if not current or stamp > int(current):
                pipe.set(name, stamp)

        try:
            self.connection.transaction(set_if_later, name)
        except RedisError as error:
            log.warning("circuit opening time not stored: %s", error)

    def _read_int(self, field: str) -> int:
        try:
            return int(self.connection.get(self.keys[field]) or 0)
        except RedisError as error:
            log.warning("circuit %s unreadable, taken as 0: %s", field, error)
            return 0

    def _write(self, command: str, field: str, *args) -> None:
        try:
            getattr(self.connection, command)(self.keys[field], *args)
        except RedisError as error:
            log.warning("circuit %s not updated: %s", field, error)
