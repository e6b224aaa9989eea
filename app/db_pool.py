"""The database pool's health check: ping a connection before use only when it sat idle.

SQLAlchemy's ``pool_pre_ping`` sends ``SELECT 1`` on every checkout, one more round trip per request. A
connection used a moment ago is known to work; one idle for :data:`PING_AFTER_IDLE_SECONDS` or more may have
been closed by a database restart, a failover or an idle timeout, so it is pinged and, if dead, replaced
before the request sees it (the pool then retries with a fresh connection). A restart while connections are
busy fails only the statements in flight, as with pre-ping: they answer 503 (app/errors.py), and SQLAlchemy
then recycles every connection older than that error.
"""

from __future__ import annotations

import time

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

PING_AFTER_IDLE_SECONDS = 1.0
_IDLE_SINCE = "herald_idle_since"


def ping_idle_connections(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Install the check on ``engine``'s pool (once per engine)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # whatever the driver raises for a dead connection
            raise DisconnectionError(f"idle connection failed its ping: {type(error).__name__}") from error
