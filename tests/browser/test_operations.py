"""Operations in a real browser: an admin retries a dead letter and it is sent again."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from rq import Queue

from app.extensions import db
from app.models import Delivery
from app.models.types import utcnow
from app.redis_client import get_redis
from tests.factories import make_notification, make_recipient, make_staff

PASSWORD = "correct horse battery"


@pytest.fixture
def dead_letter(app):
    with app.app_context():
        make_staff(email="admin@example.com", password=PASSWORD, role="admin")
        notification = make_notification(make_recipient(email="ana@example.com"), channels=["email"])
        delivery = Delivery(
            notification_id=notification.id,
            channel="email",
            status="FAILED",
            attempts=6,
            error_code="smtp_connection",
            last_error="connection refused",
            dead_lettered_at=utcnow(),
        )
        db.session.add(delivery)
        db.session.commit()
        return delivery.id


def test_admin_retries_a_dead_letter(app, live_server, dead_letter, page: Page):
    page.goto("/console/login")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.get_by_role("link", name="Operations").click()
    page.get_by_role("link", name="Dead letters").click()
    row = page.get_by_test_id(f"dead-letter-{dead_letter}")
    expect(row).to_contain_text("smtp_connection")
    row.get_by_role("button", name="Retry").click()

    expect(page.get_by_text(f"Delivery {dead_letter} is queued to be sent again.")).to_be_visible()
    expect(page.get_by_test_id("no-dead-letters")).to_be_visible()
    with app.app_context():
        db.session.expire_all()
        assert db.session.get(Delivery, dead_letter).status == "PENDING"
        assert Queue("normal", connection=get_redis()).count == 1

    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("#audit-rows tbody tr").first).to_contain_text("delivery.retry")
