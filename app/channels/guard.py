"""Provider discipline around every provider call: circuit breaker, rate limit, failover, health counters.

Every adapter sends through :func:`guarded` (one provider) or
:func:`first_available` (a channel's providers in order), so the rules hold
for all of them:

- **Circuit breaker** (pybreaker, state in Redis so every worker shares it, see
  :mod:`app.channels.circuit_store`):
  ``BREAKER_FAIL_MAX`` consecutive provider faults (5xx, timeouts, refused
  connections -- ``Result.provider_fault``) open the circuit; while it is
  open no call is made and the send answers ``Outcome.WAIT``, which the
  dispatcher turns into "re-queue later, not an attempt". After
  ``BREAKER_RESET_SECONDS`` one probe goes through (half-open) and closes it
  again on success.
- **Rate limit**: a token bucket per provider key in Redis, one Lua script
  shared by all workers. A short wait is slept through; a longer one is a WAIT.
- **Failover**: an open circuit, a rate-limit wait or a provider fault moves
  the send to the channel's next provider.
- **Health**: sends and failures per provider per minute, kept 16 minutes,
  for :mod:`app.channels.health`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import pybreaker
from flask import current_app
from prometheus_client import Counter
from redis.exceptions import RedisError

from app.channels.base import Outcome, Result
from app.channels.circuit_store import RedisCircuitStorage
from app.redis_client import get_redis, key

log = logging.getLogger(__name__)

CIRCUIT_OPEN_TOTAL = Counter("herald_circuit_open_total", "Times a provider's circuit breaker opened", ["provider"])

# A rate-limit wait up to this long is slept through inside the job; longer ones re-queue.
MAX_INLINE_WAIT = 1.0
# A circuit read as closed is trusted for this long by this process. The success path then costs
# one pipelined Redis round trip (health counters + failure-streak reset) instead of five; a circuit
# opened by another worker is noticed at most this late, and every failure still goes through pybreaker.
STATE_CACHE_SECONDS = 1.0
HEALTH_WINDOW_MINUTES = 15
HEALTH_BUCKET_TTL = (HEALTH_WINDOW_MINUTES + 1) * 60

TOKEN_BUCKET = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3]) or 1
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= wanted then
  tokens = tokens - wanted
else
  wait = (wanted - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return tostring(wait)
"""

SLOT_ACQUIRE = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  return 1
end
return 0
"""


class ProviderFault(Exception):
    """Raised inside the breaker so pybreaker counts the failure; carries the provider's Result."""

    def __init__(self, result: Result):
        super().__init__(result.error_code)
        self.result = result


class _OpenListener(pybreaker.CircuitBreakerListener):
    """Log and count an opening once, although every worker notices it when it reads the shared state."""

    def __init__(self, storage: RedisCircuitStorage):
        self.storage = storage

    def state_change(self, breaker, old_state, new_state) -> None:
        if new_state is None or new_state.name != pybreaker.STATE_OPEN:
            return
        opened_at = self.storage.opened_at
        stamp = int(opened_at.timestamp()) if opened_at else int(time.time())
        if get_redis().set(key("provider", breaker.name, "opened", stamp), 1, nx=True, ex=3600):
            get_redis().incr(key("provider", breaker.name, "opens"))
            CIRCUIT_OPEN_TOTAL.labels(provider=breaker.name).inc()
            log.warning(
                "circuit for provider %s opened after %d consecutive failures; sends wait %ss",
                breaker.name,
                breaker.fail_max,
                breaker.reset_timeout,
            )


_BREAKERS: dict[tuple[str, str, int], tuple[pybreaker.CircuitBreaker, RedisCircuitStorage]] = {}
_CLOSED_SEEN: dict[int, float] = {}
_SCRIPTS: dict[tuple[int, str], object] = {}


def breaker(provider: str) -> tuple[pybreaker.CircuitBreaker, RedisCircuitStorage]:
    """The breaker of one provider and its state in Redis under this installation's prefix."""
    config, connection = current_app.config, get_redis()
    cache_key = (config["REDIS_PREFIX"], provider, id(connection))
    if cache_key not in _BREAKERS:
        storage = RedisCircuitStorage(provider, connection)
        _BREAKERS[cache_key] = (
            pybreaker.CircuitBreaker(
                fail_max=config["BREAKER_FAIL_MAX"],
                reset_timeout=config["BREAKER_RESET_SECONDS"],
                state_storage=storage,
                name=provider,
                listeners=[_OpenListener(storage)],
                throw_new_error_on_trip=False,
            ),
            storage,
        )
    found, storage = _BREAKERS[cache_key]
    found.fail_max, found.reset_timeout = config["BREAKER_FAIL_MAX"], config["BREAKER_RESET_SECONDS"]
    return found, storage


def _script(source: str):
    connection = get_redis()
    cache_key = (id(connection), source)
    if cache_key not in _SCRIPTS:
        _SCRIPTS[cache_key] = connection.register_script(source)
    return _SCRIPTS[cache_key]


def take_token(bucket: str, per_second: float, count: int = 1) -> float:
    """Take ``count`` sends (one batch request to many recipients) from the bucket: 0.0 when granted,
    else seconds until that many are free. A batch is never larger than one second's worth (the caller
    splits it), so it can always be granted."""
    if per_second <= 0:
        return 0.0
    capacity = max(1.0, per_second, count)
    return float(_script(TOKEN_BUCKET)(keys=[key("bucket", bucket)], args=[per_second, capacity, count]))


def acquire_slot(pool: str, limit: int, lease_seconds: int) -> str | None:
    """A place in a bounded pool (e.g. workers busy on one channel); None when all are taken.

    Places expire after ``lease_seconds``, so a worker killed mid-send cannot hold one forever.
    """
    token = uuid.uuid4().hex
    if _script(SLOT_ACQUIRE)(keys=[key("slots", pool)], args=[limit, token, lease_seconds]):
        return token
    return None


def release_slot(pool: str, token: str) -> None:
    get_redis().zrem(key("slots", pool), token)


def count(provider: str, failed: bool, reset: RedisCircuitStorage | None = None) -> None:
    """Add one send (and one failure) to the provider's per-minute health buckets.

    ``reset`` also ends the breaker's streak of consecutive failures, in the same round trip.
    """
    minute = int(time.time() // 60)
    pipe = get_redis().pipeline(transaction=False)
    if reset is not None:
        reset.reset_counter_in(pipe)
    pipe.sadd(key("providers"), provider)
    pipe.incr(key("provider", provider, "sent", minute))
    pipe.expire(key("provider", provider, "sent", minute), HEALTH_BUCKET_TTL)
    if failed:
        pipe.incr(key("provider", provider, "failed", minute))
        pipe.expire(key("provider", provider, "failed", minute), HEALTH_BUCKET_TTL)
    pipe.execute()


def _open_for(circuit: pybreaker.CircuitBreaker, storage: RedisCircuitStorage) -> float | None:
    """Seconds until an open circuit lets a probe through, or None when calls may go now."""
    if circuit.current_state != pybreaker.STATE_OPEN:
        return None
    opened_at = storage.opened_at
    if opened_at is None:
        return None
    remaining = opened_at.timestamp() + circuit.reset_timeout - datetime.now(UTC).timestamp()
    return remaining if remaining > 0 else None


def _raise(result: Result) -> Result:
    raise ProviderFault(result)


def guarded(
    provider: str, send: Callable[[], Result], per_second: float = 0.0, bucket: str | None = None, tokens: int = 1
) -> Result:
    """Call one provider under its breaker and rate limit; record the outcome in the health counters.

    Once the provider has answered, its answer stands: a Redis failure in the bookkeeping after the call (breaker
    state, health counters) is logged, never turned into an error -- an error would retry a message already sent.
    """
    answers: list[Result] = []

    def send_once() -> Result:
        answers.append(send())
        return answers[0]

    try:
        return _guarded(provider, send_once, per_second, bucket, tokens)
    except RedisError as error:
        if not answers:
            raise
        log.warning(
            "provider %s answered %s, but recording it in Redis failed (%s); the answer stands",
            provider,
            answers[0].outcome.name,
            type(error).__name__,
        )
        return answers[0]


def _guarded(provider: str, send: Callable[[], Result], per_second: float, bucket: str | None, tokens: int) -> Result:
    circuit, storage = breaker(provider)
    trusted_closed = time.monotonic() - _CLOSED_SEEN.get(id(circuit), float("-inf")) < STATE_CACHE_SECONDS
    if not trusted_closed:
        remaining = _open_for(circuit, storage)
        if remaining is not None:
            return Result(
                Outcome.WAIT,
                provider,
                error_code="circuit_open",
                detail=f"circuit open for {provider}",
                retry_after=max(1.0, remaining),
            )
    limited = _rate_limited(provider, bucket or provider, per_second, tokens)
    if limited is not None:
        return limited

    if trusted_closed:
        result = send()
        if not result.provider_fault:
            count(provider, failed=result.outcome is Outcome.TRANSIENT, reset=storage)
            return result
        call, argument = _raise, result  # let pybreaker count the fault (and maybe open)
    else:

        def call(_unused=None) -> Result:
            result = send()
            if result.provider_fault:
                raise ProviderFault(result)
            return result

        argument = None

    try:
        result = circuit.call(call, argument)
    except ProviderFault as fault:
        result = fault.result
    except pybreaker.CircuitBreakerError:
        _CLOSED_SEEN.pop(id(circuit), None)
        return Result(
            Outcome.WAIT,
            provider,
            error_code="circuit_open",
            detail=f"circuit open for {provider}",
            retry_after=max(1.0, circuit.reset_timeout),
        )
    if result.provider_fault:
        _CLOSED_SEEN.pop(id(circuit), None)
    elif circuit.current_state == pybreaker.STATE_CLOSED:
        _CLOSED_SEEN[id(circuit)] = time.monotonic()
    count(provider, failed=result.provider_fault or result.outcome is Outcome.TRANSIENT)
    return result


def _rate_limited(provider: str, bucket: str, per_second: float, count: int = 1) -> Result | None:
    """Take ``count`` tokens from the bucket, sleeping through a short wait; a WAIT when none come in time, else None."""
    wait = take_token(bucket, per_second, count)
    if wait > MAX_INLINE_WAIT:
        return Result(
            Outcome.WAIT, provider, error_code="rate_limited", detail=f"{provider} rate limit", retry_after=wait
        )
    if wait:
        time.sleep(wait)
        wait = take_token(bucket, per_second, count)
        if wait:
            return Result(
                Outcome.WAIT, provider, error_code="rate_limited", detail=f"{provider} rate limit", retry_after=wait
            )
    return None


def first_available(providers: Iterable[tuple[str, Callable[[], Result], float]]) -> Result:
    """Try ``(provider, send, per_second)`` in order until one answers for itself.

    An open circuit, a rate-limit wait or a provider fault moves on to the
    next provider. When none answers, a real failed try (TRANSIENT) wins over
    WAIT, so the attempt is counted; all waiting gives the shortest wait.
    """
    fallbacks: list[Result] = []
    for provider, send, per_second in providers:
        result = guarded(provider, send, per_second)
        if moves_on(result):
            fallbacks.append(result)
            continue
        return result
    return none_answered(fallbacks)


def moves_on(result: Result) -> bool:
    """Whether failover tries the next provider after this answer."""
    return result.outcome is Outcome.WAIT or result.provider_fault


def none_answered(fallbacks: list[Result]) -> Result:
    """The answer when every provider moved on: the last real failed try, else the shortest wait."""
    if not fallbacks:
        return Result(Outcome.PERMANENT, "herald", error_code="not_configured", detail="no provider is configured")
    tried = [r for r in fallbacks if r.outcome is not Outcome.WAIT]
    if tried:
        return tried[-1]
    return min(fallbacks, key=lambda r: r.retry_after or 0.0)
