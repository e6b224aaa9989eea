"""A stopping web process ends its event streams with a final ``retry:`` (the hub's drain), in-process.

tests/integration/test_role_shutdown.py shows the same through gunicorn and a real SIGTERM.
"""

from __future__ import annotations

import re
import time

from app.realtime.hub import Hub
from app.realtime.stream import DRAIN_RETRY_MS, EventStream


def final_retry_ms(chunk: str) -> int:
    match = re.fullmatch(r"retry: (\d+)\n\n", chunk)
    assert match, chunk
    return int(match.group(1))


def test_a_drained_hub_ends_each_open_stream_with_a_final_retry_and_every_later_one_at_once(app):
    prefix = app.config["REDIS_PREFIX"]
    hub = Hub(app.config["REDIS_URL"], pattern=f"{prefix}:drain-test:*", client_name=f"{prefix}:drain-test")
    try:
        stream = iter(EventStream(hub, hub.subscribe(f"{prefix}:drain-test:1"), [], heartbeat=5.0))
        assert next(stream) == "retry: 2000\n\n"

        assert hub.drain() == 1
        started = time.monotonic()
        rest = list(stream)  # ends: no heartbeat wait, no more events
        assert time.monotonic() - started < 1.0
        assert len(rest) == 1
        assert DRAIN_RETRY_MS[0] <= final_retry_ms(rest[0]) <= DRAIN_RETRY_MS[1]

        late = list(EventStream(hub, hub.subscribe(f"{prefix}:drain-test:2"), [], heartbeat=5.0))
        assert late[0] == "retry: 2000\n\n" and len(late) == 2
        assert DRAIN_RETRY_MS[0] <= final_retry_ms(late[1]) <= DRAIN_RETRY_MS[1]
    finally:
        hub.stop()
