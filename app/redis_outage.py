"""What a web process does while Redis is unreachable: keep accepting.

The database holds everything a notification needs, so a Redis outage must not
stop the accept path. Two Redis calls sit on it:

- the per-key rate limit, which falls back to a limiter in this process's
  memory (the same limits, counted per process instead of per installation);
- the RQ enqueue after the commit, which is skipped: the row stays
  ``accepted`` and the reaper (``jobs/maintenance.py``) routes it once Redis
  answers again.

One :class:`RedisOutage` per process remembers that Redis failed, so requests
during an outage do not each wait on a refused connection, logs the outage
once when it starts and once when it ends, and lets one request per
``PROBE_SECONDS`` try Redis again. ``/metrics`` exports its counters.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PROBE_SECONDS = 1.0


@dataclass
class OutageCounters:
    fallback_charges: int = 0
    deferred_enqueues: int = 0
    outages: int = 0


class RedisOutage:
    """Per-process memory of Redis being down; a request may try Redis when it is up or a probe is due."""

    def __init__(self, probe_seconds: float = PROBE_SECONDS, clock=time.monotonic):
        self.probe_seconds, self.clock = probe_seconds, clock
        self.down_since: float | None = None
        self.next_probe = 0.0
        self.counters = OutageCounters()
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.down_since is not None

    def should_try_redis(self) -> bool:
        """True while Redis is up; while it is down, True for one caller per probe interval."""
        if self.down_since is None:
            return True
        with self._lock:
            now = self.clock()
            if now < self.next_probe:
                return False
            self.next_probe = now + self.probe_seconds
            return True

    def failed(self, error: Exception, doing: str) -> None:
        with self._lock:
            self.next_probe = self.clock() + self.probe_seconds
            if self.down_since is not None:
                return
            self.down_since = self.clock()
            self.counters.outages += 1
        log.warning(
            "Redis unreachable while %s (%s); accepting anyway: per-key rate limits counted in this process, "
            "routing left to the reaper until Redis answers",
            doing,
            type(error).__name__,
        )

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is None:
                return
            seconds, self.down_since = self.clock() - self.down_since, None
        log.warning("Redis answers again after %.1f s; rate limits back in Redis", seconds)


outage = RedisOutage()
_process_limiter = FixedWindowRateLimiter(MemoryStorage())


@dataclass(frozen=True)
class Charge:
    allowed: bool
    retry_after: int


def _charge(limiter: FixedWindowRateLimiter, item, identifiers: tuple[str, ...]) -> Charge:
    if limiter.hit(item, *identifiers):
        return Charge(True, 0)
    reset_at, _remaining = limiter.get_window_stats(item, *identifiers)
    return Charge(False, max(1, int(reset_at - time.time()) + 1))


# A process takes hits from Redis in blocks of a thousandth of a key's limit (one at a time below 2,000 per window)
# and spends them locally: one Redis round trip per block instead of per request. A block is spent only until the
# Redis window it was counted in ends, so a window never admits more than the limit; what a process leased but had
# not spent when the window ends (at most one block) is refused early instead: 0.1 % of the limit per process.
LEASE_SHARE = 1000


def lease_size(amount: int) -> int:
    """How many hits of a limit of ``amount`` per window one Redis call takes for this process."""
    return max(1, amount // LEASE_SHARE)


@dataclass
class Lease:
    left: int
    until: float  # the end of the Redis window the block was counted in (time.time())


_leases: dict[tuple[str, ...], Lease] = {}
_leases_lock = threading.Lock()


def _spend_lease(identifiers: tuple[str, ...]) -> bool:
    with _leases_lock:
        lease = _leases.get(identifiers)
        if lease is None or lease.left < 1 or time.time() >= lease.until:
            return False
        lease.left -= 1
        return True


def _lease(limiter: FixedWindowRateLimiter, item, identifiers: tuple[str, ...], size: int, rate: str) -> Charge:
    """Take ``size`` hits from Redis: this request's and ``size - 1`` for the next ones in this process."""
    if not limiter.hit(item, *identifiers, cost=size):
        reset_at, _remaining = limiter.get_window_stats(item, *identifiers)
        return Charge(False, max(1, int(reset_at - time.time()) + 1))
    reset_at, _remaining = limiter.get_window_stats(item, *identifiers)
    now = time.time()
    with _leases_lock:
        for key in [key for key, lease in _leases.items() if lease.until <= now]:
            del _leases[key]
        _leases[(*identifiers, rate)] = Lease(size - 1, reset_at)
    return Charge(True, 0)


def charge_api_key(primary: FixedWindowRateLimiter, api_key_id: int, rate: str) -> Charge:
    """Count one request against the key's limit, in Redis when it answers (leased in blocks), else in this process."""
    item = parse(rate)
    identifiers = ("api-key", str(api_key_id))
    size = lease_size(item.amount)
    if size > 1 and _spend_lease((*identifiers, rate)):
        return Charge(True, 0)
    if outage.should_try_redis():
        try:
            charge = _lease(primary, item, identifiers, size, rate) if size > 1 else _charge(primary, item, identifiers)
            outage.succeeded()
            return charge
        except RedisError as error:
            outage.failed(error, "counting an API key's rate limit")
    outage.counters.fallback_charges += 1
    return _charge(_process_limiter, item, identifiers)


def enqueue_or_leave_to_reaper(enqueue, *args, **kwargs) -> bool:
    """Enqueue after a commit; if Redis is down the committed row waits for the reaper. True when enqueued."""
    if outage.should_try_redis():
        try:
            enqueue(*args, **kwargs)
            outage.succeeded()
            return True
        except RedisError as error:
            outage.failed(error, "enqueueing an accepted notification")
    outage.counters.deferred_enqueues += 1
    return False
