"""Sending a claimed window of deliveries: as many requests in flight as the channel allows, results recorded
in bulk, and a durable note of what was handed to the client so a crash repeats only what was in flight.

The shape (see :func:`app.pipeline.deliver.send_external`): a window of up to ``WINDOW`` deliveries is claimed
in one statement (PENDING -> SENDING, one winner per delivery, committed before any provider call); its
messages are rendered; then they are handed to the client ``concurrency`` at a time, at most ``AHEAD`` handed
and not yet answered, while the results are recorded in bulk every ``FLUSH_EVERY`` results or
``FLUSH_SECONDS`` (one UPDATE + one INSERT + one commit for the lot). An adapter with ``asynchronous = True``
sends on the process's one HTTP loop (:mod:`app.channels.http`); any other through a thread pool of its
``concurrent_sends`` threads (APNs' HTTP/2 client, FCM), the same pump either way. A channel that sends one at a
time (SMTP's one connection) has one in flight, so a "not now" stops the very next message.

Why a crash still repeats only what was in flight. A claimed window is SENDING with one ``claimed_at``; a
sender that dies leaves it so, and after the lease the reaper re-drives it. Unrecorded then means one of:

1. handed to the client (in flight, or answered and not yet recorded): it may have reached the provider;
2. claimed but never handed: it certainly did not.

The database cannot tell these apart, so the sender keeps a hand-off note per delivery in Redis, in a hash per
claim (keyed by its ``claimed_at``): ``reserved`` is written with the claim (before its commit), ``handed``
*before* the delivery is given to the client (write-ahead; if that write fails nothing more is handed and the
rest of the window is given back). :func:`never_handed` reads the notes when a dead sender's claims are
re-driven: a marketing delivery whose note still says ``reserved`` for that very claim is sent normally; one
marked ``handed`` -- or with no note at all (Redis lost it, or the sender died between its commit and the
note) -- becomes UNCERTAIN, never sent twice, exactly as before. Transactional and security deliveries go
again in every case with the same provider idempotency key. So a crash can turn into UNCERTAIN at most
``AHEAD`` handed-but-unanswered deliveries plus ``FLUSH_EVERY`` answered-but-unrecorded ones: the ones that
were truly in flight (the old design: one group of ``concurrent_sends``, with two commits per group).

A window is also bounded in time: after half the dispatch lease nothing more is handed out; the sender renews
the claim of what it has not handed (:func:`app.pipeline.claims.renew`, conditional on the same claim, with
fresh ``reserved`` notes) and goes on, so a slow or rate-limited provider never lets a live sender's claims
look abandoned. A WAIT answer (open circuit, rate limit, no free slot) does the same: the rest
of the window waits with it, its attempts given back.

Batch hook -- the one place a provider's batch API plugs in: an adapter that defines
``send_batch(messages: list[Message]) -> list[Result]`` (one Result per message, same order) and
``batch_size`` (messages per provider call) gets the window in chunks of ``batch_size``, each chunk marked
``handed`` before its call and recorded as soon as it answers (:func:`_send_batches`).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from redis.exceptions import RedisError

from app.channels import Message, Outcome, Result
from app.channels.guard_async import flush_counts
from app.channels.http import submit
from app.redis_client import get_redis, key

log = logging.getLogger(__name__)

WINDOW = 500  # deliveries claimed by one statement
FLUSH_EVERY = 200  # results recorded by one transaction...
FLUSH_SECONDS = 0.05  # ...or after this long, whichever first
NOTE_TTL = 24 * 3600  # a note older than this reads as missing: the re-drive then falls back to UNCERTAIN
RESERVED, HANDED = "reserved", "handed"

Record = Callable[[list[tuple[object, Result]]], None]


@dataclass
class Sent:
    """How a window ended: seconds the provider asked to wait (None: it did not), and the claimed pairs not
    handed out because the window outlived half its lease (the caller renews their claim and goes on)."""

    wait: float | None
    rest: list[tuple[object, Message]]


_pools: dict[int, ThreadPoolExecutor] = {}
_running: set[asyncio.Task] = set()


def ahead(adapter) -> int:
    """Deliveries handed to the client and not yet answered, at most: four rounds of the channel's concurrency;
    one for a channel that sends one at a time (SMTP's one connection), so a "not now" stops the very next."""
    concurrency = max(1, adapter.concurrent_sends)
    return 4 * concurrency if concurrency > 1 else 1


# -- the hand-off notes ------------------------------------------------------------------------------------------


def _stamp(claimed_at: datetime) -> str:
    return claimed_at.astimezone(UTC).isoformat(timespec="microseconds")


def _note(delivery_ids: list[int], claimed_at: datetime, state: str) -> None:
    """One hash per claim (its ``claimed_at``): delivery id -> state; one command for the lot."""
    if not delivery_ids:
        return
    name = key("handoff", _stamp(claimed_at))
    pipe = get_redis().pipeline(transaction=False)
    pipe.hset(name, mapping=dict.fromkeys(map(str, delivery_ids), state))
    pipe.expire(name, NOTE_TTL)
    pipe.execute()


def reserve(delivery_ids: list[int], claimed_at: datetime) -> None:
    """Note a fresh claim as not handed yet. Best effort: without the note a re-drive is only more careful."""
    try:
        _note(delivery_ids, claimed_at, RESERVED)
    except RedisError as error:
        log.warning("hand-off notes of %d claims not written (%s)", len(delivery_ids), type(error).__name__)


def never_handed(claims: list[tuple[int, datetime]]) -> set[int]:
    """Of ``(delivery id, claimed_at)`` left SENDING by a dead sender, those its sender never gave to the client."""
    by_claim: dict[str, list[int]] = {}
    for delivery_id, claimed_at in claims:
        by_claim.setdefault(_stamp(claimed_at), []).append(delivery_id)
    if not by_claim:
        return set()
    pipe = get_redis().pipeline(transaction=False)
    for stamp, ids in by_claim.items():
        pipe.hmget(key("handoff", stamp), [str(d) for d in ids])
    try:
        answers = pipe.execute()
    except RedisError:
        return set()
    found = set()
    for ids, states in zip(by_claim.values(), answers, strict=True):
        found.update(d for d, state in zip(ids, states, strict=True) if state in (RESERVED, RESERVED.encode()))
    return found


def _give_back(channel: str, seconds: float, why: str) -> Result:
    return Result(Outcome.WAIT, channel, error_code="not_sent", detail=why, retry_after=max(seconds, 0.5))


# -- sending a window --------------------------------------------------------------------------------------------


def send_window(
    adapter, channel: str, pairs: list[tuple[object, Message]], claimed_at: datetime, record: Record, deadline: float
) -> Sent:
    """Send claimed ``(item, message)`` pairs, recording as it goes, until done, a "not now" or ``deadline``
    (time.monotonic: when to stop handing out)."""
    if not pairs:
        return Sent(None, [])
    if getattr(adapter, "send_batch", None) and getattr(adapter, "batch_size", 0) > 0:
        return _send_batches(adapter, channel, pairs, claimed_at, record, deadline)
    return _pump(adapter, channel, pairs, claimed_at, record, deadline)


def _handed(pairs: list[tuple[object, Message]], claimed_at: datetime) -> bool:
    """Write-ahead: note ``pairs`` as handed before the client gets them; False when that cannot be written."""
    try:
        _note([item.id for item, _m in pairs], claimed_at, HANDED)
        return True
    except RedisError as error:
        log.warning("hand-off notes not written (%s): the rest of the window waits", type(error).__name__)
        return False


def _may_hand(started: bool, deadline: float) -> bool:
    """Before ``deadline``; and the first step of every window goes whatever the time (each renewal makes progress)."""
    return not started or time.monotonic() < deadline


def _wait_of(results: list[tuple[object, Result]]) -> float | None:
    waits = [r.retry_after or 1.0 for _i, r in results if r.outcome is Outcome.WAIT]
    return max(waits) if waits else None


def _stop(channel: str, rest, wait: float | None, record: Record) -> Sent:
    """After a "not now": give back what was claimed and not handed (PENDING, attempt returned).

    Without one (the window outlived half its lease) the rest is handed back to the caller to renew its claim.
    """
    if rest and wait is not None:
        record([(item, _give_back(channel, wait, "the provider or Redis asked to wait")) for item, _m in rest])
        return Sent(wait, [])
    return Sent(wait, list(rest))


def _send_batches(adapter, channel, pairs, claimed_at, record, deadline) -> Sent:
    """The batch hook (module docstring): one provider call per ``batch_size`` messages."""
    size, rest, wait = adapter.batch_size, deque(pairs), None
    while rest and wait is None and _may_hand(len(rest) < len(pairs), deadline):
        chunk = [rest.popleft() for _ in range(min(size, len(rest)))]
        if not _handed(chunk, claimed_at):
            rest.extendleft(reversed(chunk))
            wait = 1.0
            break
        try:
            answers = adapter.send_batch([message for _item, message in chunk])
            if len(answers) != len(chunk):
                raise ValueError(f"send_batch answered {len(answers)} results for {len(chunk)} messages")
        except Exception as error:  # an adapter bug must not lose the deliveries: they retry
            log.exception("adapter %s raised for a batch of %d", adapter.name, len(chunk))
            answers = [_adapter_error(adapter, error)] * len(chunk)
        results = [(item, answer) for (item, _m), answer in zip(chunk, answers, strict=True)]
        record(results)
        flush_counts()
        wait = _wait_of(results)
    return _stop(channel, rest, wait, record)


def _adapter_error(adapter, error: Exception) -> Result:
    return Result(Outcome.TRANSIENT, adapter.name, error_code="adapter_error", detail=repr(error)[:500])


# -- handing out: the HTTP loop for asynchronous adapters, a thread pool for the others --------------------------


def _pool(size: int) -> ThreadPoolExecutor:
    """One thread pool per worker process and size, reused across windows."""
    if size not in _pools:
        _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"send-{size}")
    return _pools[size]


def call_adapter(app, adapter, message: Message) -> Result:
    with app.app_context():
        try:
            return adapter.send(message)
        except Exception as error:  # an adapter bug must not lose the delivery: it retries
            log.exception("adapter %s raised for delivery %s", adapter.name, message.delivery_id)
            return _adapter_error(adapter, error)


async def _send_one(adapter, item, message: Message, done: queue.SimpleQueue) -> None:
    try:
        result = await adapter.send_async(message)
    except Exception as error:  # an adapter bug must not lose the delivery: it retries
        log.exception("adapter %s raised for delivery %s", adapter.name, message.delivery_id)
        result = _adapter_error(adapter, error)
    done.put((item, result))


async def _send_step(adapter, step, done: queue.SimpleQueue) -> None:
    """One task per message (each in a copy of the step's context: the sender's Flask app context)."""
    loop = asyncio.get_running_loop()
    for item, message in step:
        task = loop.create_task(_send_one(adapter, item, message, done))
        _running.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(_running.discard)


def _hand_out(adapter, step, done: queue.SimpleQueue) -> None:
    """Give ``step`` to the client; each answer arrives on ``done`` as ``(item, Result)``."""
    if adapter.asynchronous:
        submit(_send_step(adapter, step, done))
        return
    app, pool = current_app._get_current_object(), _pool(max(1, adapter.concurrent_sends))
    for item, message in step:
        future = pool.submit(call_adapter, app, adapter, message)
        future.add_done_callback(lambda answered, item=item: done.put((item, answered.result())))


def _pump(adapter, channel, pairs, claimed_at, record, deadline) -> Sent:
    """Hand out steps of ``concurrency`` (write-ahead noted), collect answers, record every K results or T s."""
    done: queue.SimpleQueue = queue.SimpleQueue()
    step_size, limit = max(1, adapter.concurrent_sends), ahead(adapter)
    rest, buffer, wait, outstanding = deque(pairs), [], None, 0
    flushed = time.monotonic()
    while rest or outstanding:
        while rest and wait is None and outstanding < limit and _may_hand(len(rest) < len(pairs), deadline):
            step = [rest.popleft() for _ in range(min(step_size, len(rest)))]
            if not _handed(step, claimed_at):
                rest.extendleft(reversed(step))
                wait = 1.0
                break
            _hand_out(adapter, step, done)
            outstanding += len(step)
        if not outstanding:
            break
        fresh = []
        try:
            fresh.append(done.get(timeout=max(0.001, FLUSH_SECONDS - (time.monotonic() - flushed))))
            while len(fresh) < outstanding:
                fresh.append(done.get_nowait())
        except queue.Empty:
            pass
        outstanding -= len(fresh)
        found = _wait_of(fresh)
        wait = wait if found is None else max(wait or 0.0, found)
        buffer += fresh
        if buffer and (len(buffer) >= FLUSH_EVERY or time.monotonic() - flushed >= FLUSH_SECONDS or not outstanding):
            record(buffer)
            flush_counts()
            buffer, flushed = [], time.monotonic()
    return _stop(channel, rest, wait, record)
