"""Operations in the console: delivery log, dead letters (retry re-sends for real), health, API keys; admins only."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from rq import Queue
from sqlalchemy import func, select

from app.api.keys import find_active_key
from app.api.scopes import ALL_SCOPES
from app.extensions import db
from app.inbox.store import record_click
from app.models import ApiKey, AuditEntry, Delivery, DeliveryEvent
from app.models.types import utcnow
from app.redis_client import get_redis
from app.settings_values import check_rate_limit
from tests.factories import make_notification, make_recipient, make_staff

ADMIN, MARKETER, PASSWORD = "admin@example.com", "marketer@example.com", "correct horse battery"


@pytest.fixture
def staff(app):
    make_staff(email=ADMIN, password=PASSWORD, role="admin")
    make_staff(email=MARKETER, password=PASSWORD, role="marketer")


@pytest.fixture
def admin(client, staff):
    assert client.post("/console/login", data={"email": ADMIN, "password": PASSWORD}).status_code == 302
    return client


@pytest.fixture
def marketer(client, staff):
    assert client.post("/console/login", data={"email": MARKETER, "password": PASSWORD}).status_code == 302
    return client


def dead_email(recipient, **fields) -> Delivery:
    """An email delivery that gave up: FAILED and on the dead-letter list, as jobs.delivery leaves it."""
    notification = make_notification(
        recipient, channels=["email"], title="Receipt", body="Thanks", **fields.pop("notification", {})
    )
    values = {
        "status": "FAILED",
        "attempts": 6,
        "error_code": "smtp_connection",
        "last_error": "connection refused",
        "dead_lettered_at": utcnow(),
    }
    values.update(fields)
    delivery = Delivery(notification_id=notification.id, channel="email", **values)
    db.session.add(delivery)
    db.session.commit()
    return delivery


def audit(action) -> list[AuditEntry]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def fresh(delivery_id) -> Delivery:
    db.session.expire_all()
    return db.session.get(Delivery, delivery_id)


OPERATIONS_PAGES = [
    "/console/operations",
    "/console/operations/dead-letters",
    "/console/operations/health",
    "/console/operations/api-keys",
    "/console/operations/notifications/abc",
]
OPERATIONS_WRITES = [
    "/console/operations/dead-letters/1/retry",
    "/console/operations/dead-letters/retry-all",
    "/console/operations/dead-letters/1/discard",
    "/console/operations/api-keys",
    "/console/operations/api-keys/1/revoke",
    "/console/operations/api-keys/1/rate-limit",
]


# --- permissions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", OPERATIONS_PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]


@pytest.mark.parametrize("path", OPERATIONS_PAGES)
def test_marketers_cannot_open_operations_pages(marketer, path):
    assert marketer.get(path).status_code == 403


@pytest.mark.parametrize("path", OPERATIONS_WRITES)
def test_marketers_cannot_change_anything_in_operations(marketer, path):
    delivery = dead_email(make_recipient(), id=1)
    db.session.add(
        ApiKey(id=1, name="svc", prefix="hk_x", key_hash="h" * 64, rate_limit="10/minute", scopes="users:read")
    )
    db.session.commit()
    assert marketer.post(path, data={"name": "x", "rate_limit": "1/second"}).status_code == 403
    assert fresh(delivery.id).status == "FAILED" and fresh(delivery.id).dead_lettered_at is not None
    assert db.session.scalar(select(ApiKey.rate_limit)) == "10/minute"
    assert db.session.scalar(select(AuditEntry)) is None


def test_operations_nav_is_shown_to_admins_only(admin, client):
    assert 'href="/console/operations"' in admin.get("/console/recipients").get_data(as_text=True)
    client.post("/console/logout")
    client.post("/console/login", data={"email": MARKETER, "password": PASSWORD})
    html = client.get("/console/recipients").get_data(as_text=True)
    assert 'href="/console/operations"' not in html and 'href="/console/analytics"' in html


# --- delivery log ----------------------------------------------------------------------------------


def test_delivery_log_finds_by_id_user_id_and_idempotency_key(admin):
    ana = make_recipient(external_id="ana")
    keyed = make_notification(ana, idempotency_key="order-42")
    other = make_notification(ana)
    by_id = admin.get(f"/console/operations?q={keyed.id}")
    assert by_id.status_code == 302 and by_id.headers["Location"].endswith(f"/notifications/{keyed.id}")
    by_user = admin.get("/console/operations?q=ana").get_data(as_text=True)
    assert keyed.id in by_user and other.id in by_user
    by_key = admin.get("/console/operations?q=order-42").get_data(as_text=True)
    assert keyed.id in by_key and other.id not in by_key
    nothing = admin.get("/console/operations?q=nope", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert nothing.lstrip().startswith('<section id="log-results"') and 'data-testid="no-results"' in nothing


def test_timeline_shows_accepted_routed_and_every_delivery_event(api, client, staff, run_jobs):
    make_recipient(external_id="ana", email=None)
    response = api.post(
        "/v1/notifications",
        json={
            "user_id": "ana",
            "type": "transactional",
            "channels": ["in_app", "email"],
            "title": "Hi",
            "body": "There",
        },
        headers={"Idempotency-Key": "k-1"},
    )
    notification_id = response.json["id"]
    run_jobs()
    # Sign in after the worker ran: it ends the session the signed-in user was loaded in.
    admin = client
    admin.post("/console/login", data={"email": ADMIN, "password": PASSWORD})
    html = admin.get(f"/console/operations/notifications/{notification_id}").get_data(as_text=True)
    assert 'data-testid="step-accepted"' in html and 'data-testid="step-routed"' in html
    assert "k-1" in html
    delivered, suppressed = db.session.scalars(select(Delivery).order_by(Delivery.channel.desc())).all()
    assert f'data-testid="delivery-{delivered.id}-status">{delivered.status.lower()}<' in html
    assert f'data-testid="delivery-{suppressed.id}-status">suppressed<' in html and "unreachable" in html
    assert 'data-testid="step-clicked"' not in html

    record_click(notification_id, "in_app")
    html = admin.get(f"/console/operations/notifications/{notification_id}").get_data(as_text=True)
    assert 'data-testid="step-clicked"' in html and "first click, from in_app" in html


def test_unknown_notification_timeline_is_a_404(admin):
    assert admin.get("/console/operations/notifications/nope").status_code == 404


# --- dead letters ----------------------------------------------------------------------------------


def test_dead_letter_list_shows_failed_ones_with_their_error(admin):
    ana = make_recipient()
    dead = dead_email(ana)
    retrying = dead_email(ana, status="PENDING", dead_lettered_at=None)
    html = admin.get("/console/operations/dead-letters").get_data(as_text=True)
    assert f'data-testid="dead-letter-{dead.id}"' in html and "smtp_connection" in html
    assert f'data-testid="dead-letter-{retrying.id}"' not in html


def test_retrying_a_dead_letter_really_sends_it(admin, run_jobs, smtp_server):
    delivery = dead_email(make_recipient(email="ana@example.com"))
    delivery_id = delivery.id  # the in-process worker ends the session: keep the id, not the object
    response = admin.post(f"/console/operations/dead-letters/{delivery_id}/retry")
    assert response.status_code == 302
    retried = fresh(delivery_id)
    assert (retried.status, retried.attempts, retried.dead_lettered_at) == ("PENDING", 6, None)

    run_jobs()
    sent = fresh(delivery_id)
    assert sent.status == "DISPATCHED" and sent.attempts == 7
    assert [m["To"] for m in smtp_server.messages] == ["ana@example.com"]
    details = db.session.scalars(
        select(DeliveryEvent.detail).where(DeliveryEvent.delivery_id == delivery_id).order_by(DeliveryEvent.id)
    ).all()
    assert details[0] == f"retried by {ADMIN}"
    [entry] = audit("delivery.retry")
    assert (
        entry.target_id == str(delivery_id) and entry.before["status"] == "FAILED" and entry.before["dead_lettered_at"]
    )
    assert entry.after == {
        "status": "PENDING",
        "dead_lettered_at": None,
        "error_code": "smtp_connection",
        "attempts": 6,
    }


def test_retry_twice_enqueues_once(admin):
    delivery = dead_email(make_recipient())
    admin.post(f"/console/operations/dead-letters/{delivery.id}/retry")
    second = admin.post(f"/console/operations/dead-letters/{delivery.id}/retry", follow_redirects=True)
    assert "no longer a dead letter" in second.get_data(as_text=True)
    assert Queue("normal", connection=get_redis()).count == 1
    assert len(audit("delivery.retry")) == 1


def test_retry_all_revives_every_dead_letter_on_its_priority_queue(admin):
    ana = make_recipient()
    normal = [dead_email(ana) for _ in range(3)]
    critical = dead_email(ana, notification={"priority": "critical"})
    discarded = dead_email(ana, dead_lettered_at=None, reason="discarded by someone")
    admin.post("/console/operations/dead-letters/retry-all")
    assert {fresh(d.id).status for d in [*normal, critical]} == {"PENDING"}
    assert fresh(discarded.id).status == "FAILED"
    connection = get_redis()
    assert Queue("normal", connection=connection).count == 3 and Queue("critical", connection=connection).count == 1
    assert len(audit("delivery.retry")) == 4


def test_discard_takes_it_off_the_list_and_leaves_it_failed(admin):
    delivery = dead_email(make_recipient())
    admin.post(f"/console/operations/dead-letters/{delivery.id}/discard")
    discarded = fresh(delivery.id)
    assert (discarded.status, discarded.dead_lettered_at, discarded.reason) == ("FAILED", None, f"discarded by {ADMIN}")
    assert 'data-testid="no-dead-letters"' in admin.get("/console/operations/dead-letters").get_data(as_text=True)
    last_event = db.session.scalars(select(DeliveryEvent).where(DeliveryEvent.delivery_id == delivery.id)).all()[-1]
    assert (last_event.status, last_event.detail) == ("FAILED", f"discarded by {ADMIN}")
    [entry] = audit("delivery.discard")
    assert entry.before["dead_lettered_at"] and entry.after["dead_lettered_at"] is None
    assert Queue("normal", connection=get_redis()).count == 0


def test_dead_letters_page_in_pages(admin):
    ana = make_recipient()
    start = utcnow()
    deliveries = [dead_email(ana, dead_lettered_at=start - timedelta(minutes=n)) for n in range(27)]
    first = admin.get("/console/operations/dead-letters").get_data(as_text=True)
    assert f'dead-letter-{deliveries[24].id}"' in first and f'dead-letter-{deliveries[25].id}"' not in first
    second = admin.get("/console/operations/dead-letters?page=2").get_data(as_text=True)
    assert f'dead-letter-{deliveries[26].id}"' in second


# --- health ----------------------------------------------------------------------------------------


def test_health_page_shows_queue_depths_and_provider_health(admin):
    Queue("low", connection=get_redis()).enqueue("builtins.len", [1])
    html = admin.get("/console/operations/health").get_data(as_text=True)
    assert 'data-testid="queue-low-queued">1<' in html
    assert "Providers" in html


# --- API keys --------------------------------------------------------------------------------------


def test_admin_creates_a_key_sees_it_once_and_it_works(admin, client, redis_conn):
    response = admin.post(
        "/console/operations/api-keys",
        data={"name": "billing", "rate_limit": "100/minute", "scopes": ["notifications:send", "users:read"]},
    )
    assert response.status_code == 303  # POST -> redirect -> GET: a reload never posts again
    shown = admin.get(response.headers["Location"])
    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
    html = shown.get_data(as_text=True)
    plaintext = html.split('data-testid="api-key-plaintext">')[1].split("<")[0]
    assert find_active_key(plaintext).rate_limit == "100/minute"
    assert find_active_key(plaintext).scopes == {"notifications:send", "users:read"}
    listing = admin.get("/console/operations/api-keys").get_data(as_text=True)
    assert "billing" in listing and plaintext not in listing and plaintext[:10] in listing
    [entry] = audit("api_key.create")
    assert entry.before is None and entry.after["name"] == "billing" and plaintext not in str(entry.after)


def test_reloading_the_new_key_page_shows_nothing_and_creates_nothing(admin, redis_conn):
    created = admin.post(
        "/console/operations/api-keys",
        data={"name": "billing", "rate_limit": "100/minute", "scopes": ["notifications:send"]},
    )
    first = admin.get(created.headers["Location"]).get_data(as_text=True)
    plaintext = first.split('data-testid="api-key-plaintext">')[1].split("<")[0]

    reload = admin.get(created.headers["Location"], follow_redirects=True)

    html = reload.get_data(as_text=True)
    assert reload.status_code == 200 and plaintext not in html and "shown only once" in html
    assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 1
    assert not any(plaintext.encode() in (redis_conn.get(name) or b"") for name in redis_conn.keys("*new-api-key*"))


def test_the_new_key_page_shows_it_even_when_redis_cannot_hold_it(admin, app, monkeypatch):
    """The key is already created: rather than lose it, the POST's own answer shows it."""
    from app.redis_client import connect
    from tests.conftest import free_port

    monkeypatch.setitem(app.extensions, "herald_redis", connect(f"redis://127.0.0.1:{free_port()}/0"))  # nobody there
    response = admin.post(
        "/console/operations/api-keys",
        data={"name": "billing", "rate_limit": "100/minute", "scopes": ["notifications:send"]},
    )
    assert response.status_code == 201 and 'data-testid="api-key-plaintext"' in response.get_data(as_text=True)


def test_key_form_rejects_a_bad_rate_limit_next_to_the_field(admin):
    response = admin.post("/console/operations/api-keys", data={"name": "x", "rate_limit": "lots"})
    assert response.status_code == 400
    assert 'id="rate_limit-errors"' in response.get_data(as_text=True)
    assert db.session.scalar(select(ApiKey)) is None


def test_key_form_offers_every_scope_with_erasure_and_webhooks_unticked_and_refuses_none(admin):
    page = admin.get("/console/operations/api-keys").get_data(as_text=True)
    for scope in ALL_SCOPES:
        ticked = re.search(rf'<input[^>]*value="{scope}"[^>]*>', page).group(0)
        assert ("checked" in ticked) == (scope not in ("users:erase", "webhooks:manage")), ticked
    response = admin.post("/console/operations/api-keys", data={"name": "x", "rate_limit": "1/second"})
    assert response.status_code == 400 and "Choose at least one scope." in response.get_data(as_text=True)
    response = admin.post(
        "/console/operations/api-keys", data={"name": "x", "rate_limit": "1/second", "scopes": ["root"]}
    )
    assert response.status_code == 400 and db.session.scalar(select(ApiKey)) is None


def test_admin_changes_a_key_rate_limit_and_revokes_it(admin):
    admin.post(
        "/console/operations/api-keys", data={"name": "svc", "rate_limit": "100/minute", "scopes": ["users:read"]}
    )
    key = db.session.scalar(select(ApiKey))
    bad = admin.post(f"/console/operations/api-keys/{key.id}/rate-limit", data={"rate_limit": "5/fortnight"})
    assert bad.status_code == 400 and f'id="rate-{key.id}-errors"' in bad.get_data(as_text=True)
    assert (
        admin.post(f"/console/operations/api-keys/{key.id}/rate-limit", data={"rate_limit": "5/second"}).status_code
        == 302
    )
    assert admin.post(f"/console/operations/api-keys/{key.id}/revoke").status_code == 302
    db.session.expire_all()
    key = db.session.get(ApiKey, key.id)
    assert key.rate_limit == "5/second" and key.revoked_at is not None
    [limit] = audit("api_key.rate_limit")
    assert (limit.before["rate_limit"], limit.after["rate_limit"]) == ("100/minute", "5/second")
    [revoked] = audit("api_key.revoke")
    assert revoked.before["revoked_at"] is None and revoked.after["revoked_at"]
    assert admin.post(f"/console/operations/api-keys/{key.id}/revoke").status_code == 302
    assert len(audit("api_key.revoke")) == 1


@pytest.mark.parametrize(
    "text,ok",
    [
        ("6000/minute", True),
        ("10 per second", True),
        ("0/minute", False),
        ("5/minute;1/second", False),
        ("abc", False),
        ("", False),
    ],
)
def test_check_rate_limit_accepts_one_positive_limits_rate(text, ok):
    if ok:
        assert check_rate_limit(text) == text
    else:
        with pytest.raises(ValueError):
            check_rate_limit(text)


def test_new_keys_get_the_configured_default_rate_limit(app, admin, runner, monkeypatch):
    from app.api.keys import create_api_key

    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "42/minute")
    assert create_api_key("plain")[0].rate_limit == "42/minute"
    assert 'value="42/minute"' in admin.get("/console/operations/api-keys").get_data(as_text=True)
    result = runner.invoke(args=["create-api-key", "from-cli"])
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(ApiKey.rate_limit).where(ApiKey.name == "from-cli")) == "42/minute"
    refused = runner.invoke(args=["create-api-key", "bad", "--rate-limit", "lots"])
    assert refused.exit_code != 0 and "not a rate" in refused.output
