"""Calling an adapter for many messages, with as many in flight as the channel allows."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from flask import current_app

from app.channels import Message, Outcome, Result

log = logging.getLogger(__name__)

_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(size: int) -> ThreadPoolExecutor:
    """One thread pool per worker process and size, reused across chunks."""
    if size not in _pools:
        _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"send-{size}")
    return _pools[size]


def call_adapter(app, adapter, message: Message) -> Result:
    with app.app_context():
        try:
            return adapter.send(message)
        except Exception as error:  # an adapter bug must not lose the delivery: it retries
            log.exception("adapter %s raised for delivery %s", adapter.name, message.delivery_id)
            return Result(Outcome.TRANSIENT, adapter.name, error_code="adapter_error", detail=repr(error)[:500])


def send_messages(adapter, messages: list[tuple[int, Message]]) -> list[tuple[int, Result]]:
    """Send ``(delivery id, message)`` pairs through one adapter; results in the same order.

    An adapter whose ``send`` is thread-safe (a pooled HTTP client) raises
    ``Channel.concurrent_sends``: then up to N messages are in flight at once,
    so a provider's round trip is not paid N times in a row. With the default
    of 1 (SMTP's single connection) they go one by one, and a "not now" from
    the provider leaves the rest unsent, waiting with it.
    """
    app = current_app._get_current_object()
    # -- Batch-capable adapters (app/channels/email_api/): the claimed group goes out in provider batch requests.
    if len(messages) > 1 and getattr(adapter, "send_batch", None) is not None:
        return call_batch(app, adapter, messages)
    # -- end of the batch branch
    concurrency = max(1, adapter.concurrent_sends)
    if concurrency > 1 and len(messages) > 1:
        futures = [(d, _pool(concurrency).submit(call_adapter, app, adapter, m)) for d, m in messages]
        return [(d, future.result()) for d, future in futures]
    results: list[tuple[int, Result]] = []
    for delivery_id, message in messages:
        if results and results[-1][1].outcome is Outcome.WAIT:
            results.append((delivery_id, results[-1][1]))
            continue
        results.append((delivery_id, call_adapter(app, adapter, message)))
    return results


def call_batch(app, adapter, messages: list[tuple[int, Message]]) -> list[tuple[int, Result]]:
    """``adapter.send_batch`` for the whole group: one Result per message, in order."""
    with app.app_context():
        try:
            results = adapter.send_batch([m for _d, m in messages])
            if len(results) != len(messages):
                raise ValueError(f"send_batch answered {len(results)} results for {len(messages)} messages")
        except Exception as error:  # an adapter bug must not lose the deliveries: they retry
            log.exception("adapter %s raised for a batch of %d", adapter.name, len(messages))
            failed = Result(Outcome.TRANSIENT, adapter.name, error_code="adapter_error", detail=repr(error)[:500])
            results = [failed] * len(messages)
    return [(d, r) for (d, _m), r in zip(messages, results, strict=True)]
