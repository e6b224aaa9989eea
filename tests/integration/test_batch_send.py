"""The batch sender's provider calls: overlapped for thread-safe adapters, one by one (stopping at "not now") otherwise."""

from __future__ import annotations

import threading
import time

from app.channels import Message, Outcome, Result
from app.channels.base import Channel
from app.channels.push import MobilePush
from app.channels.web_push import WebPushChannel
from app.pipeline.sending import send_messages


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

    def send(self, message):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.called.append(message.delivery_id)
        time.sleep(0.1)
        with self.lock:
            self.in_flight -= 1
        return self.answers.get(message.delivery_id, Result(Outcome.DISPATCHED, "fake", f"m-{message.delivery_id}"))


def test_a_thread_safe_adapter_keeps_its_concurrency_in_flight_and_results_keep_their_order(app):
    provider = SlowProvider(app.config, concurrency=4)
    with app.app_context():
        started = time.perf_counter()
        results = send_messages(provider, [(n, message(n)) for n in range(8)])
        elapsed = time.perf_counter() - started
    assert provider.most_in_flight == 4
    assert elapsed < 0.35, f"8 calls of 100 ms, 4 at a time, took {elapsed:.2f} s"
    assert [(d, r.provider_message_id) for d, r in results] == [(n, f"m-{n}") for n in range(8)]


def test_a_one_at_a_time_adapter_stops_calling_when_the_provider_says_not_now(app):
    wait = Result(Outcome.WAIT, "fake", error_code="rate_limited", retry_after=3)
    provider = SlowProvider(app.config, concurrency=1, answers={2: wait})
    with app.app_context():
        results = send_messages(provider, [(n, message(n)) for n in range(5)])
    assert provider.most_in_flight == 1 and provider.called == [0, 1, 2]
    assert [r.outcome for _d, r in results] == [Outcome.DISPATCHED] * 2 + [Outcome.WAIT] * 3


def test_an_adapter_that_raises_costs_only_its_own_message_a_retry(app):
    class Broken(SlowProvider):
        def send(self, message):
            if message.delivery_id == 1:
                raise RuntimeError("adapter bug")
            return super().send(message)

    with app.app_context():
        results = dict(send_messages(Broken(app.config, concurrency=4), [(n, message(n)) for n in range(3)]))
    assert results[1].outcome is Outcome.TRANSIENT and results[1].error_code == "adapter_error"
    assert results[0].outcome is results[2].outcome is Outcome.DISPATCHED


def test_push_providers_with_pooled_clients_overlap_their_calls():
    assert WebPushChannel.concurrent_sends > 1 and MobilePush.concurrent_sends > 1
