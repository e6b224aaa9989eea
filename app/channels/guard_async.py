"""Provider discipline for sends that run on the HTTP loop (:mod:`app.channels.http`): the same rules as
:mod:`app.channels.guard`, without a blocking Redis round trip per send on the loop.

- While this process trusts a provider's circuit as closed (``guard.STATE_CACHE_SECONDS`` since it last saw
  it closed), a send goes straight out; its health counters and the end of the breaker's failure streak are
  added up in memory and written in one pipelined round trip by :func:`flush_counts`, which the batch sender
  calls each time it records results (every 50 ms at most while sending) and a single send right after it.
- A provider fault still goes through pybreaker at once (so the circuit opens after the same
  ``BREAKER_FAIL_MAX`` faults), and the pending streak reset of that provider is dropped: a fault after
  successes is what the breaker must see.
- A circuit not trusted as closed (open, half-open, or not looked at for a second) is handled by the
  synchronous :func:`guard.guarded` in a thread of the loop's executor, which waits for the send on the loop:
  one code path decides probes and openings.
- The token bucket is the same Redis script; a short wait is awaited, not slept (the loop keeps sending).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial

import pybreaker
from redis.exceptions import RedisError

from app.channels import guard
from app.channels.base import Outcome, Result
from app.channels.http import run_sync

log = logging.getLogger(__name__)

_PENDING: dict[str, list] = {}  # provider -> [sent, failed, storage whose streak to reset or None]
_PENDING_LOCK = threading.Lock()

AsyncSend = Callable[[], Awaitable[Result]]


def _trusted_closed(circuit) -> bool:
    seen = guard._CLOSED_SEEN.get(id(circuit), float("-inf"))
    return time.monotonic() - seen < guard.STATE_CACHE_SECONDS


def _defer(provider: str, failed: bool, reset) -> None:
    with _PENDING_LOCK:
        entry = _PENDING.setdefault(provider, [0, 0, None])
        entry[0] += 1
        entry[1] += int(failed)
        entry[2] = reset


def flush_counts() -> None:
    """Write the health counters (and streak resets) added up since the last flush, in one round trip."""
    with _PENDING_LOCK:
        pending = dict(_PENDING)
        _PENDING.clear()
    if not pending:
        return
    minute = int(time.time() // 60)
    pipe = guard.get_redis().pipeline(transaction=False)
    for provider, (sent, failed, reset) in pending.items():
        if reset is not None:
            reset.reset_counter_in(pipe)
        pipe.sadd(guard.key("providers"), provider)
        pipe.incrby(guard.key("provider", provider, "sent", minute), sent)
        pipe.expire(guard.key("provider", provider, "sent", minute), guard.HEALTH_BUCKET_TTL)
        if failed:
            pipe.incrby(guard.key("provider", provider, "failed", minute), failed)
            pipe.expire(guard.key("provider", provider, "failed", minute), guard.HEALTH_BUCKET_TTL)
    try:
        pipe.execute()
    except RedisError as error:  # the answers stand; only the bookkeeping is lost
        log.warning("health counters of %d providers not written: %s", len(pending), type(error).__name__)


def run_and_flush(coroutine: Awaitable[Result]) -> Result:
    """One send from outside the loop (an API send, a test): wait for it, then write its counters."""
    try:
        return run_sync(coroutine)
    finally:
        flush_counts()


async def guarded_async(provider: str, send: AsyncSend, per_second: float = 0.0, bucket: str | None = None) -> Result:
    """:func:`guard.guarded` for a coroutine send running on the HTTP loop."""
    circuit, storage = guard.breaker(provider)
    if not _trusted_closed(circuit):
        context = contextvars.copy_context()
        careful = partial(guard.guarded, provider, lambda: run_sync(send()), per_second, bucket)
        return await asyncio.get_running_loop().run_in_executor(None, context.run, careful)
    limited = await _rate_limited(provider, bucket or provider, per_second)
    if limited is not None:
        return limited
    result = await send()
    if not result.provider_fault:
        _defer(provider, result.outcome is Outcome.TRANSIENT, storage)
        return result
    with _PENDING_LOCK:
        if provider in _PENDING:
            _PENDING[provider][2] = None
    guard._CLOSED_SEEN.pop(id(circuit), None)
    try:
        circuit.call(guard._raise, result)
    except (guard.ProviderFault, pybreaker.CircuitBreakerError):
        pass  # counted (and maybe opened the circuit): the answer stands
    except RedisError as error:
        log.warning("provider %s fault not recorded in Redis (%s); the answer stands", provider, type(error).__name__)
        return result
    _defer(provider, True, None)
    return result


async def _rate_limited(provider: str, bucket: str, per_second: float) -> Result | None:
    """Take a token, awaiting a short wait; a WAIT when none comes in time, else None."""
    wait = guard.take_token(bucket, per_second)
    if wait > guard.MAX_INLINE_WAIT:
        return Result(
            Outcome.WAIT, provider, error_code="rate_limited", detail=f"{provider} rate limit", retry_after=wait
        )
    if wait:
        await asyncio.sleep(wait)
        wait = guard.take_token(bucket, per_second)
        if wait:
            return Result(
                Outcome.WAIT, provider, error_code="rate_limited", detail=f"{provider} rate limit", retry_after=wait
            )
    return None


async def first_available_async(providers: Iterable[tuple[str, AsyncSend, float]]) -> Result:
    """:func:`guard.first_available` for coroutine sends: the next provider on a WAIT or a provider fault."""
    fallbacks: list[Result] = []
    for provider, send, per_second in providers:
        result = await guarded_async(provider, send, per_second)
        if guard.moves_on(result):
            fallbacks.append(result)
            continue
        return result
    return guard.none_answered(fallbacks)
