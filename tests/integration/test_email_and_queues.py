"""Email against a real SMTP server, retry/dead-letter behaviour, and priority queue order."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlparse

from rq import Queue
from sqlalchemy import select

from app.extensions import db
from app.models import Delivery, DeliveryEvent, Suppression
from app.models.types import utcnow
from app.redis_client import get_redis
from jobs.delivery import dispatch_delivery
from tests.conftest import free_port
from tests.factories import make_notification, make_recipient, make_template


def post(api, **fields):
    body = {"user_id": "ana", "type": "transactional", "channels": ["email"], "title": "Receipt", "body": "Thanks <3"}
    body.update(fields)
    response = api.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.json
    return response.json["id"]


def delivery_of(notification_id: str) -> Delivery:
    db.session.expire_all()
    return db.session.scalar(select(Delivery).where(Delivery.notification_id == notification_id))


def test_email_has_text_and_html_parts_and_a_stable_message_id(api, run_jobs, smtp_server):
    make_template(
        "receipt",
        type="transactional",
        variants={
            "en": {
                "email": {
                    "subject": "Receipt {{ data.order }}",
                    "html": "<p>Total {{ data.total }}</p>",
                    "text": "Total {{ data.total }}",
                }
            }
        },
    )
    make_recipient(external_id="ana", email="ana@example.com")
    notification_id = post(api, template="receipt", title=None, body=None, data={"order": "A-1", "total": "<9.99>"})
    run_jobs()
    [message] = smtp_server.messages
    assert message["To"] == "ana@example.com" and message["Subject"] == "Receipt A-1"
    assert message["Message-ID"] == f"<herald-{notification_id}-email@herald.local>"
    assert message.get_body(("plain",)).get_content().strip() == "Total <9.99>"
    assert message.get_body(("html",)).get_content().strip() == "<p>Total &lt;9.99&gt;</p>"
    assert message["List-Unsubscribe"] is None, "transactional mail has no unsubscribe header"
    assert delivery_of(notification_id).status == "DISPATCHED"


def test_marketing_mail_carries_one_click_unsubscribe_that_works(api, client, run_jobs, smtp_server):
    make_recipient(external_id="ana", email="ana@example.com")
    post(api, type="marketing", category="promotions", title="Sale", body="50% off")
    run_jobs()
    [message] = smtp_server.messages
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.fullmatch(r"<(.+)>", message["List-Unsubscribe"]).group(1)
    # What a mail client does for RFC 8058: POST the fixed body to the URL, no cookies.
    assert client.post(urlparse(url).path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    second = post(api, type="marketing", category="promotions", title="Sale", body="60% off")
    run_jobs()
    assert len(smtp_server.messages) == 1
    assert delivery_of(second).status == "SUPPRESSED" and delivery_of(second).reason == "opted_out"


def raw_headers(raw: bytes) -> bytes:
    return raw.partition(b"\r\n\r\n")[0]


def test_list_unsubscribe_goes_over_the_wire_as_plain_rfc_8058_headers(api, run_jobs, smtp_server):
    make_recipient(external_id="ana", email="ana@example.com")
    post(api, type="marketing", category="promotions", title="Sale", body="50% off")
    run_jobs()
    [raw] = smtp_server.raw
    headers = raw_headers(raw)
    assert b"=?" not in headers, "no RFC 2047 encoded word anywhere in the headers"
    assert re.search(rb"\r\nList-Unsubscribe: <http://[^\s>]+/unsubscribe/[A-Za-z0-9_.-]+>\r\n", headers), headers
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in headers


def test_list_unsubscribe_lists_the_mailto_first_and_folds_only_between_the_two(app, api, run_jobs, smtp_server):
    app.config["UNSUBSCRIBE_MAILTO"] = "unsubscribe@herald.example"
    app.config["BASE_URL"], base_url = (
        "https://notifications.a-rather-long-host-name.example.com",
        app.config["BASE_URL"],
    )
    try:
        make_recipient(external_id="ana-with-a-long-id-" + "x" * 60, email="ana@example.com")
        post(
            api,
            user_id="ana-with-a-long-id-" + "x" * 60,
            type="marketing",
            category="promotions",
            title="Sale",
            body="50% off",
        )
        run_jobs()
    finally:
        app.config["UNSUBSCRIBE_MAILTO"] = None
        app.config["BASE_URL"] = base_url
    [raw] = smtp_server.raw
    folded = re.search(rb"\r\nList-Unsubscribe: (.*?)\r\n(?=\S)", raw_headers(raw), re.S).group(1)
    assert b"=?" not in folded
    mailto, https = folded.split(b",\r\n ")
    assert mailto == b"<mailto:unsubscribe@herald.example?subject=unsubscribe>"
    assert re.fullmatch(
        rb"<https://notifications\.a-rather-long-host-name\.example\.com/unsubscribe/[A-Za-z0-9_.-]{60,}>", https
    )


def test_hard_bounce_suppresses_the_address_for_every_later_mail(api, run_jobs, smtp_server):
    make_recipient(external_id="ana", email="gone@example.com")
    smtp_server.handler.reject_rcpt["gone@example.com"] = "550 5.1.1 <gone@example.com>: user unknown"
    first = post(api)
    run_jobs()
    bounced = delivery_of(first)
    assert (bounced.status, bounced.error_code, bounced.attempts) == ("FAILED", "smtp_550", 1)
    assert db.session.scalar(select(Suppression.address)) == "gone@example.com"
    second = post(api, type="security", category="login", title="New sign-in", body="Was it you?")
    run_jobs()
    assert delivery_of(second).status == "SUPPRESSED" and delivery_of(second).reason == "suppressed_address"


def test_transient_failures_back_off_then_dead_letter(app, api, run_jobs):
    make_recipient(external_id="ana", email="ana@example.com")
    app.config["SMTP_URL"], saved = f"smtp://127.0.0.1:{free_port()}", app.config.get("SMTP_URL")  # nothing listens
    try:
        notification_id = post(api)
        run_jobs()
        delivery = delivery_of(notification_id)
        assert (delivery.status, delivery.attempts, delivery.error_code) == ("PENDING", 1, "smtp_connection")
        assert get_redis().zcard("rq:scheduled:normal") == 1, "the retry waits in RQ's scheduled registry"
        for _ in range(5):  # the remaining tries, without waiting out the backoff
            db.session.execute(Delivery.__table__.update().values(not_before=None))
            db.session.commit()
            dispatch_delivery(delivery.id)
        delivery = delivery_of(notification_id)
        assert (delivery.status, delivery.attempts) == ("FAILED", 6)
        assert delivery.dead_lettered_at is not None
        details = db.session.scalars(select(DeliveryEvent.detail).where(DeliveryEvent.delivery_id == delivery.id)).all()
        assert any("retry in" in (d or "") for d in details) and "gave up after 6 attempts" in details[-1]
    finally:
        app.config["SMTP_URL"] = saved


def test_a_dispatch_that_runs_before_its_retry_time_puts_it_back_instead_of_dropping_it(app):
    recipient = make_recipient(external_id="ana", email="ana@example.com")
    waiting = make_notification(recipient, channels=["email"])
    busy = make_notification(recipient, channels=["email"])
    later = utcnow() + timedelta(seconds=60)
    db.session.add_all(
        [
            Delivery(notification_id=waiting.id, channel="email", status="PENDING", not_before=later, attempts=1),
            Delivery(notification_id=busy.id, channel="email", status="SENDING", claimed_at=utcnow(), attempts=1),
        ]
    )
    db.session.commit()
    waiting_id, busy_id = (delivery_of(n.id).id for n in (waiting, busy))

    assert dispatch_delivery(waiting_id) == "rescheduled"
    assert dispatch_delivery(busy_id) == "not-claimed", "someone else holds it: nothing to put back"
    [(job_id, at)] = get_redis().zrange("rq:scheduled:normal", 0, -1, withscores=True)
    assert abs(at - later.timestamp()) < 1
    assert delivery_of(waiting.id).status == "PENDING" and delivery_of(waiting.id).attempts == 1


def test_critical_never_waits_behind_a_flood_of_low(app, run_jobs):
    from app.tasks import enqueue

    order = []
    connection = get_redis()
    low, critical = Queue("low", connection=connection), Queue("critical", connection=connection)
    for n in range(300):
        low.enqueue("builtins.len", [n])
    job = enqueue("builtins.len", [1], priority="critical")
    assert critical.count == 1 and low.count == 300
    from jobs.worker import build_worker

    worker = build_worker()
    worker.work(burst=True, max_jobs=1, with_scheduler=False, logging_level="WARNING")
    job.refresh()
    order.append(job.get_status())
    assert order == ["finished"] and low.count == 300


def test_a_bounce_reported_in_another_case_still_suppresses_the_address(api, run_jobs, smtp_server):
    from app.webhooks.receipts import suppress

    assert api.put("/v1/users/ana", json={"email": "Ana.Silva@Example.com"}).json["email"] == "ana.silva@example.com"
    suppress("email", "ANA.SILVA@example.COM", "hard bounce (provider report)")
    db.session.commit()
    assert db.session.scalar(select(Suppression.address)) == "ana.silva@example.com"
    notification_id = post(api)
    run_jobs()
    assert (
        delivery_of(notification_id).status == "SUPPRESSED"
        and delivery_of(notification_id).reason == "suppressed_address"
    )
    assert smtp_server.messages == []
