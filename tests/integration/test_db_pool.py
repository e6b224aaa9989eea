"""The pool's idle ping (app/db_pool.py): a connection that died while idle is replaced before a request uses it."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text

from app.db_pool import PING_AFTER_IDLE_SECONDS, ping_idle_connections
from app.extensions import db


@pytest.fixture
def engine(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("needs a server that can close a connection (TEST_DATABASE_URL=postgresql://…)")
    engine = create_engine(db.engine.url, pool_size=1, max_overflow=0)
    ping_idle_connections(engine)
    yield engine
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(text("SELECT pg_backend_pid()"))


def terminate(pid: int) -> None:
    with db.engine.connect() as connection:
        assert connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        connection.commit()


def test_connection_killed_while_idle_is_replaced_without_an_error(engine):
    first = backend_pid(engine)
    terminate(first)
    time.sleep(PING_AFTER_IDLE_SECONDS + 0.2)
    assert backend_pid(engine) != first


def test_only_a_connection_idle_for_the_interval_is_pinged(engine, monkeypatch):
    pings = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda connection: pings.append(1) or real_ping(connection))
    backend_pid(engine)
    backend_pid(engine)  # checked in a moment ago: known to work, no round trip spent on it
    assert pings == []
    time.sleep(PING_AFTER_IDLE_SECONDS + 0.2)
    backend_pid(engine)
    assert pings == [1]
