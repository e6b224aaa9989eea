"""The batch sender's provider calls: overlapped for thread-safe adapters, one by one (stopping at "not now") otherwise;
answers recorded in bulk, not per group of concurrent calls."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

from app.channels import Message, Outcome, Result
from app.channels.base import Channel
from app.channels.push import MobilePush
from app.channels.web_push import WebPushChannel
from app.pipeline import sending


def send_messages(adapter, count: int, records: list | None = None) -> list[tuple[int, Result]]:
    """Through the pipeline's sender (``send_window``): every recorded answer, by delivery id in id order."""
    records = [] if records is None else records
    pairs = [(SimpleNamespace(id=n), message(n)) for n in range(count)]
    sending.send_window(
        adapter, "fake", pairs, datetime.now(UTC), lambda results: records.append(results), time.monotonic() + 60
    )
    return sorted((item.id, result) for batch in records for item, result in batch)


def message(n: int) -> Message:
    return Message(
        delivery_id=n,
        recipient_id=n,
        notification_id=f"n{n}",
        channel="fake",
        idempotency_key=f"herald-n{n}-fake",
        recipient_external_id=f"user-{n}",
        notification_type="transactional",
        category="account",
        priority="normal",
        content={"title": "t", "body": "b"},
        data={},
    )


class SlowProvider(Channel):
    """Answers after 100 ms and remembers how many calls were in flight at once."""

    name = "fake"

    def __init__(self, app_config, concurrency: int, answers=None):
        super().__init__(app_config)
        self.concurrent_sends = concurrency
        self.answers = answers or {}
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.called: list[int] = []
        self.delay = 0.1

    def send(self, message):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.called.append(message.delivery_id)
        time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1
        return self.answers.get(message.delivery_id, Result(Outcome.DISPATCHED, "fake", f"m-{message.delivery_id}"))


def test_a_thread_safe_adapter_keeps_its_concurrency_in_flight_and_each_answer_lands_on_its_delivery(app):
    provider = SlowProvider(app.config, concurrency=4)
    with app.app_context():
        started = time.perf_counter()
        results = send_messages(provider, 8)
        elapsed = time.perf_counter() - started
    assert provider.most_in_flight == 4
    assert elapsed < 0.35, f"8 calls of 100 ms, 4 at a time, took {elapsed:.2f} s"
    assert [(d, r.provider_message_id) for d, r in results] == [(n, f"m-{n}") for n in range(8)]


def test_a_one_at_a_time_adapter_stops_calling_when_the_provider_says_not_now(app):
    wait = Result(Outcome.WAIT, "fake", error_code="rate_limited", retry_after=3)
    provider = SlowProvider(app.config, concurrency=1, answers={2: wait})
    with app.app_context():
        results = send_messages(provider, 5)
    assert provider.most_in_flight == 1 and provider.called == [0, 1, 2]
    assert [r.outcome for _d, r in results] == [Outcome.DISPATCHED] * 2 + [Outcome.WAIT] * 3
    assert [r.error_code for _d, r in results[3:]] == ["not_sent"] * 2, "the rest is given back, not sent"


def test_a_pooled_adapter_s_answers_are_recorded_in_bulk_not_per_group_of_concurrent_calls(app, monkeypatch):
    """The regression behind issue 12's slower push dispatch: one UPDATE + INSERT + commit per group of 8."""
    monkeypatch.setattr(sending, "FLUSH_SECONDS", 5.0)
    provider = SlowProvider(app.config, concurrency=4)
    provider.delay = 0.01
    records: list = []
    with app.app_context():
        results = send_messages(provider, 40, records)
    assert [d for d, r in results if r.outcome is Outcome.DISPATCHED] == list(range(40))
    assert provider.most_in_flight == 4
    assert max(len(batch) for batch in records) > 4, [len(batch) for batch in records]
    assert len(records) < 10, f"{len(records)} records for 10 groups of 4"


def test_an_adapter_that_raises_costs_only_its_own_message_a_retry(app):
    class Broken(SlowProvider):
        def send(self, message):
            if message.delivery_id == 1:
                raise RuntimeError("adapter bug")
            return super().send(message)

    with app.app_context():
        results = dict(send_messages(Broken(app.config, concurrency=4), 3))
    assert results[1].outcome is Outcome.TRANSIENT and results[1].error_code == "adapter_error"
    assert results[0].outcome is results[2].outcome is Outcome.DISPATCHED


def test_push_providers_with_pooled_clients_overlap_their_calls():
    assert WebPushChannel.concurrent_sends > 1 and MobilePush.concurrent_sends > 1
