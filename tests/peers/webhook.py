"""A host product's webhook receiver on loopback: keeps every request; answers as a test tells it to."""

from __future__ import annotations

import json
import threading
import time

from tests.peers.http import HttpPeer


class WebhookPeer(HttpPeer):
    """``statuses`` are answered in turn (then 200); ``sleep`` delays every answer; ``hold`` blocks request number N."""

    def __init__(self, statuses: list[int] | None = None, sleep: float = 0.0):
        super().__init__()
        self.statuses = list(statuses or [])
        self.sleep = sleep
        self.requests: list[dict] = []
        self.hold_request: int | None = None
        self.release = threading.Event()
        self.holding = threading.Event()
        self.decide = None  # optional body -> status (or None for the usual answer)

    def handle(self, method, path, headers, body):
        with self.lock:
            self.requests.append(
                {
                    "path": path,
                    "headers": {name.lower(): value for name, value in headers.items()},
                    "body": body,
                    "received": time.monotonic(),
                }
            )
            number = len(self.requests)
            decided = self.decide(body) if self.decide else None
            status = decided or (self.statuses.pop(0) if self.statuses else 200)
        if self.hold_request == number:
            self.holding.set()
            self.release.wait(60)
        if self.sleep:
            time.sleep(self.sleep)
        return status, {}, {"ok": status < 300}

    def received(self) -> list[dict]:
        with self.lock:
            return list(self.requests)

    def events(self) -> list[dict]:
        return [json.loads(request["body"]) for request in self.received()]

    def ids(self) -> list[str]:
        return [request["headers"].get("webhook-id") for request in self.received()]
