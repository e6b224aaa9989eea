"""Redis or the database unreachable, in-process: the accept path keeps accepting without Redis, and a dead
database is a 503 with Retry-After (JSON for the API, a styled page elsewhere), never a 500.

The dead servers are real: a Redis and a PostgreSQL address on loopback where nothing listens. The live
fault tests (stopping real servers mid-load) are in test_fault_injection.py.
"""

from __future__ import annotations

import importlib.metadata
import logging

import pytest
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError
from sqlalchemy import select

from app.extensions import db, limiter
from app.models import Notification
from app.redis_client import connect
from app.redis_outage import OutageCounters, RedisOutage, charge_api_key, outage
from tests.conftest import free_port
from tests.factories import make_recipient

DEAD_REDIS = "redis://127.0.0.1:{port}/0"


@pytest.fixture
def redis_down(app, monkeypatch):
    """Every Redis client of the app (its own and the rate limiter's storage) points at a port nobody listens on."""
    url = DEAD_REDIS.format(port=free_port())
    monkeypatch.setitem(app.extensions, "herald_redis", connect(url))
    monkeypatch.setattr(limiter, "_storage", RedisStorage(url))
    monkeypatch.setattr(outage, "down_since", None)
    monkeypatch.setattr(outage, "next_probe", 0.0)
    monkeypatch.setattr(outage, "counters", OutageCounters())
    yield
    outage.succeeded()


def post(api, key: str | None = None, **fields):
    body = {
        "user_id": "ana",
        "type": "transactional",
        "category": "payments",
        "title": "Paid",
        "body": "42.00",
        "channels": ["in_app"],
        **fields,
    }
    return api.post("/v1/notifications", json=body, headers={"Idempotency-Key": key} if key else {})


def test_redis_down_post_is_stored_and_accepted(api, redis_down):
    make_recipient(external_id="ana")
    response = post(api, key="order-1")
    assert response.status_code == 202
    stored = db.session.get(Notification, response.json["id"])
    assert stored is not None and stored.status == "accepted"  # the reaper routes it once Redis is back


def test_redis_down_idempotency_still_holds_in_the_database(api, redis_down):
    make_recipient(external_id="ana")
    first = post(api, key="order-1")
    replay = post(api, key="order-1")
    conflict = post(api, key="order-1", body="a different body")
    assert (first.status_code, replay.status_code, conflict.status_code) == (202, 202, 409)
    assert replay.json["id"] == first.json["id"]
    assert db.session.scalars(select(Notification.id)).all() == [first.json["id"]]


def test_redis_down_is_logged_once_and_counted_in_metrics(api, client, redis_down, caplog):
    make_recipient(external_id="ana")
    with caplog.at_level(logging.WARNING, logger="app.redis_outage"):
        codes = [post(api).status_code for _ in range(5)]
    assert codes == [202] * 5
    assert len([r for r in caplog.records if "Redis unreachable" in r.getMessage()]) == 1
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "herald_rate_limit_fallback_active 1.0" in metrics
    assert "herald_rate_limit_fallback_requests_total 5.0" in metrics
    assert "herald_accept_enqueue_deferred_total 5.0" in metrics


def test_redis_down_per_key_limit_still_applies_in_the_process(client, redis_down):
    from app.api.keys import create_api_key

    make_recipient(external_id="ana")
    _row, slow_key = create_api_key("slow", rate_limit="2/minute")
    headers = {"Authorization": f"Bearer {slow_key}"}
    responses = [client.get("/v1/users/ana", headers=headers) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert 1 <= int(responses[-1].headers["Retry-After"]) <= 60


def test_redis_back_moves_limits_back_to_redis_and_says_so(app, redis_conn, caplog):
    """A probe after the outage finds Redis again: counting returns to the shared store, logged once."""
    dead = FixedWindowRateLimiter(RedisStorage(DEAD_REDIS.format(port=free_port())))
    live = FixedWindowRateLimiter(limiter.storage)
    outage.next_probe = 0.0
    with caplog.at_level(logging.WARNING, logger="app.redis_outage"):
        assert charge_api_key(dead, 7, "100/minute").allowed
        assert outage.active
        outage.next_probe = 0.0
        assert charge_api_key(live, 7, "100/minute").allowed
    assert not outage.active
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis unreachable" in m for m in messages) == 1
    assert sum("Redis answers again" in m for m in messages) == 1


def test_outage_lets_one_caller_per_probe_interval_try_redis():
    now = [100.0]
    tracker = RedisOutage(probe_seconds=1.0, clock=lambda: now[0])
    assert tracker.should_try_redis()
    tracker.failed(ConnectionError("refused"), "testing")
    assert not tracker.should_try_redis()
    now[0] += 1.0
    assert tracker.should_try_redis()
    assert not tracker.should_try_redis()  # the probe is taken; others use the fallback
    tracker.succeeded()
    assert tracker.should_try_redis() and tracker.should_try_redis()
    assert tracker.counters.outages == 1


@pytest.fixture
def database_down_app(app):
    """A second Herald on the same Redis whose PostgreSQL address has nothing listening."""
    from app import create_app

    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/herald?connect_timeout=2"
    return create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "SQLALCHEMY_DATABASE_URI": dead})


def test_database_down_post_is_503_with_retry_after_and_json(database_down_app):
    response = database_down_app.test_client().post(
        "/v1/notifications",
        json={"user_id": "ana", "type": "transactional", "title": "t", "body": "b"},
        headers={"Authorization": "Bearer hk_" + "x" * 43},
    )
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.json["error"]["code"] == "service_unavailable"
    assert "database" in response.json["error"]["message"]


def assert_styled_503(response) -> None:
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    page = response.get_data(as_text=True)
    assert 'data-testid="error-code">503<' in page and "database" in page


def test_database_down_console_page_is_styled_503(database_down_app):
    from flask_login.utils import _create_identifier

    client = database_down_app.test_client()
    with database_down_app.test_request_context(
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
        headers={"User-Agent": f"Werkzeug/{importlib.metadata.version('werkzeug')}"},
    ):
        identifier = _create_identifier()  # what flask-login's strong session protection expects from this client
    with client.session_transaction() as session:  # a signed-in staff member whose row cannot be loaded
        session.update({"_user_id": "1", "_id": identifier, "_fresh": True})
    assert_styled_503(client.get("/console/"))


def test_database_down_inbox_page_is_styled_503(database_down_app):
    from app.inbox.auth import user_token

    token = user_token(database_down_app.config["INBOX_SECRET"], "ana")
    assert_styled_503(database_down_app.test_client().get(f"/inbox?user=ana&token={token}"))


def test_database_down_healthz_names_it_without_hosts_or_driver_messages(database_down_app):
    response = database_down_app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "down: database", "database": "down", "redis": "ok"}
    text = response.get_data(as_text=True)
    port = database_down_app.config["SQLALCHEMY_DATABASE_URI"].split(":")[-1].split("/")[0]
    assert "127.0.0.1" not in text and port not in text and "psycopg" not in text.lower()


def test_redis_down_sign_in_is_still_rate_limited_in_the_process(client, redis_down, monkeypatch):
    """The console's per-address limit falls back to memory (Flask-Limiter's fallback) instead of failing."""
    monkeypatch.setattr(limiter, "_storage_dead", False)  # restored afterwards: later tests count in Redis again
    limiter._fallback_storage.reset()
    codes = [
        client.post("/console/login", data={"email": "admin@example.com", "password": f"guess-{n}"}).status_code
        for n in range(11)
    ]
    limiter._fallback_storage.reset()
    assert codes == [200] * 10 + [429]


def test_redis_down_a_claimed_window_waits_unsent_with_its_attempts_given_back(app, redis_down, smtp_server):
    """No worker slot and no hand-off note can be taken without Redis: the window claimed in the database is
    handed back PENDING (attempts returned), nothing reaches the provider, nothing is left SENDING."""
    from app.models import Delivery
    from app.models.bulk import insert_ignoring_conflicts
    from app.models.types import utcnow
    from app.pipeline.deliver import deliver
    from tests.integration.test_crash_and_races import email_notification

    rows = []
    for n in range(5):
        make_recipient(external_id=f"o{n}", email=f"o{n}@example.com")
        notification_id = email_notification(f"o{n}")
        rows.append({"notification_id": notification_id, "channel": "email", "status": "PENDING", "attempts": 0})
        rows[-1].update(created_at=utcnow(), updated_at=utcnow())
    insert_ignoring_conflicts(Delivery, rows, ["notification_id", "channel"])
    db.session.commit()
    with pytest.raises(RedisError):  # handing them to the queue for later fails too: the reaper re-drives them
        deliver(list(db.session.scalars(select(Delivery.id))))
    db.session.expire_all()
    assert {(d.status, d.attempts) for d in db.session.scalars(select(Delivery))} == {("PENDING", 0)}
    assert smtp_server.messages == []
