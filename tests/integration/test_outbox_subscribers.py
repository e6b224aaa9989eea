"""The outbox's "is anyone listening?" cache (PostgreSQL; SQLite asks the database each time): no query per emit
when nobody is, and an endpoint change applies to the next emit of every process (through a generation number in
Redis), or within SUBSCRIBED_TTL when it was written behind Herald's back."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event, func, select, text

from app.extensions import db
from app.models import WebhookMessage
from app.outbound_webhooks import outbox
from app.outbound_webhooks.endpoints import create_endpoint
from app.outbound_webhooks.events import DELIVERY_DELIVERED, Fact
from tests.integration.test_outbound_webhooks import webhook_config  # noqa: F401  (a fixture)

FACT = Fact(DELIVERY_DELIVERED, {"user_id": "u-1", "notification_id": "n-1", "channel": "in_app"})


def cached_here() -> None:
    if db.session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite asks the database on every emit (no Redis round trip inside its one write lock)")


def emitted() -> int:
    count = outbox.emit([FACT])
    db.session.commit()
    return count


def messages() -> int:
    return db.session.scalar(select(func.count()).select_from(WebhookMessage))


class Statements:
    def __init__(self):
        self.seen: list[str] = []

    def __enter__(self):
        event.listen(db.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        event.remove(db.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, params, context, executemany):
        self.seen.append(statement)


def test_emit_asks_the_database_nothing_while_nobody_listens(app):
    cached_here()
    assert emitted() == 0  # fills the cache
    with Statements() as statements:
        assert emitted() == 0
    assert not [s for s in statements.seen if "webhook_endpoints" in s]


def test_an_endpoint_created_in_another_process_gets_the_very_next_event(app, webhook_config):  # noqa: F811
    assert emitted() == 0
    stale = dict(outbox._subscribed)  # what another process holds: "nobody listens"
    create_endpoint("http://127.0.0.1:9/hook", [DELIVERY_DELIVERED])
    db.session.commit()  # bumps the generation in Redis
    outbox._subscribed.update(stale)
    assert emitted() == 1
    assert messages() == 1


def test_an_endpoint_written_by_hand_applies_within_the_ttl(app, monkeypatch):
    cached_here()
    monkeypatch.setattr(outbox, "SUBSCRIBED_TTL", 0.5)
    assert emitted() == 0
    db.session.execute(
        text(
            "INSERT INTO webhook_endpoints (url, description, event_types, secret, enabled, consecutive_failures,"
            " created_at, updated_at) VALUES ('http://127.0.0.1:9/h', '', :types, 'whsec_x', true, 0,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        ),
        {"types": f'["{DELIVERY_DELIVERED}"]'},
    )
    db.session.commit()  # no generation bump: Herald did not see this write
    assert emitted() == 0  # the cached answer still stands...
    time.sleep(0.6)
    assert emitted() == 1  # ...for SUBSCRIBED_TTL at most


def test_a_stale_cache_never_writes_to_a_deleted_endpoint(app, webhook_config):  # noqa: F811
    endpoint, _secret = create_endpoint("http://127.0.0.1:9/hook", [DELIVERY_DELIVERED])
    db.session.commit()
    assert emitted() == 1  # the cache now says someone listens
    db.session.execute(text("DELETE FROM webhook_messages"))
    db.session.execute(text("DELETE FROM webhook_endpoints"))  # behind Herald's back: no bump
    db.session.commit()
    assert emitted() == 0  # the endpoints themselves are read live
    assert messages() == 0
