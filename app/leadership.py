"""Which ``flask scheduler`` process is the active one: a lease in Redis.

Any number of scheduler processes may run, on any hosts; one holds the lease
and runs the periodic work, the others poll and take over when it lapses.

- A candidate takes the lease with ``SET key token NX PX lease`` (redis-py's
  ``Lock.acquire``), renews it every third of the lease with a token-checked
  ``PEXPIRE`` (``Lock.reacquire``, a Lua script that fails if the key holds
  another token), and releases it on shutdown only if it still holds it.
- The leader counts its lease from the moment it *sent* the request that won
  or renewed it, on its own monotonic clock, and stops starting periodic work
  a safety margin (a fifth of the lease) before that could end -- whether
  Redis answered "not yours" or did not answer at all. Redis expires the key
  no earlier than a full lease after that request arrived, so a standby can
  only win once the old leader has already stopped: no overlap.
- A standby tries every :attr:`LeaseTiming.poll_every` seconds, so after a
  leader dies (SIGKILL, lost host, lost Redis) another one is active within
  the lease plus one poll.

:class:`Leadership` decides, without I/O, from the outcomes the caller
reports; :class:`RedisLease` is the I/O. Why Redis and not a PostgreSQL
advisory lock: Redis is already what every role shares (an advisory lock would
be the only thing holding a long-lived PostgreSQL session per scheduler, and
does not work through a transaction-pooling PgBouncer or on SQLite), and a
lease with an explicit time-to-live tells its holder exactly how long it may
act, whereas a session lock is lost silently with its connection.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass

import redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)

LEADER_KEY_PARTS = ("scheduler", "leader")


@dataclass(frozen=True)
class LeaseTiming:
    """Everything follows from the lease length (``HERALD_SCHEDULER_LEASE_SECONDS``)."""

    lease: float

    @property
    def renew_every(self) -> float:
        return self.lease / 3

    @property
    def margin(self) -> float:
        return self.lease / 5

    @property
    def poll_every(self) -> float:
        return min(1.0, self.lease / 5)


class Leadership:
    """The leader's view of its own lease: active until the margin before the lease could have lapsed."""

    def __init__(self, timing: LeaseTiming):
        self.timing = timing
        self.valid_until: float | None = None

    def active(self, now: float) -> bool:
        return self.valid_until is not None and now < self.valid_until

    def record(self, asked_at: float, held: bool | None) -> None:
        """The outcome of an acquire or renew sent at ``asked_at``: held, lost (``False``) or unknown (``None``,
        Redis did not answer -- the lease then runs out on its own)."""
        if held is True:
            self.valid_until = asked_at + self.timing.lease - self.timing.margin
        elif held is False:
            self.valid_until = None

    def wait(self, now: float) -> float:
        """Seconds until the next acquire or renew: a leader renews, but never later than its own deadline."""
        if not self.active(now):
            return self.timing.poll_every
        return max(0.0, min(self.timing.renew_every, self.valid_until - now))


def holder_label() -> str:
    """What the lease holds: which host and process, plus a random part so a restarted pid is not the same holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RedisLease:
    """The lease key, through redis-py's public ``Lock`` API (token-checked renew and release)."""

    def __init__(self, client: redis.Redis, name: str, seconds: float, holder: str):
        self.holder = holder
        self._lock = client.lock(name, timeout=seconds, blocking=False, thread_local=False)
        self._held = False

    def try_hold(self) -> bool | None:
        """Take the lease or renew it. True: held; False: another process holds it; None: Redis did not answer."""
        try:
            if self._held:
                try:
                    self._held = bool(self._lock.reacquire())
                except LockError:  # expired, or taken by another candidate meanwhile
                    self._held = False
                return self._held
            self._held = bool(self._lock.acquire(token=self.holder))
            return self._held
        except (redis.RedisError, OSError) as error:
            log.warning("scheduler lease: Redis did not answer (%s)", type(error).__name__)
            return None

    def release(self) -> None:
        """Give the lease up at once (if it is still ours), so a standby need not wait for it to lapse."""
        if not self._held:
            return
        self._held = False
        try:
            self._lock.release()
        except (LockError, redis.RedisError, OSError):
            pass  # lapsed or taken meanwhile, or Redis is away: it lapses by itself
