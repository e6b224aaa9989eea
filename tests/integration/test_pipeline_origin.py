"""The origin of a notification decides the re-checks before every send, on every path into the pipeline."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.campaigns import store
from app.extensions import db
from app.models import Campaign, Delivery, StaffUser
from app.models.types import utcnow
from app.pipeline import origin
from app.pipeline.deliver import deliver
from tests.factories import make_recipient, make_staff, make_template
from tests.integration.test_campaigns import campaign_fields
from tests.integration.test_console_operations import ADMIN, dead_email

PASSWORD = "correct horse battery"


def campaign_with_status(status: str, **overrides) -> int:
    template = make_template(
        "winter",
        type="marketing",
        category="promo",
        variants={"en": {"email": {"subject": "Sale", "html": "<p>20% off</p>", "text": "20% off"}}},
    )
    marketer = db.session.scalar(select(StaffUser).where(StaffUser.role == "marketer")) or make_staff(
        email="mia@example.com", role="marketer"
    )
    campaign = store.create_campaign(campaign_fields(template.id, channels=["email"], **overrides), marketer)
    campaign.status = status
    db.session.commit()
    return campaign.id


def campaign_email(campaign_id: int, **fields) -> int:
    recipient = make_recipient(email="ana@example.com")
    delivery = dead_email(
        recipient, notification={"campaign_id": campaign_id, "origin": origin.of_campaign(campaign_id)}, **fields
    )
    return delivery.id


def test_console_dead_letter_retry_of_a_cancelled_campaigns_delivery_sends_nothing(client, run_jobs, smtp_server):
    make_staff(email=ADMIN, password=PASSWORD, role="admin")
    delivery_id = campaign_email(campaign_with_status("cancelled"))
    assert client.post("/console/login", data={"email": ADMIN, "password": PASSWORD}).status_code == 302
    assert client.post(f"/console/operations/dead-letters/{delivery_id}/retry").status_code == 302
    run_jobs()
    delivery = db.session.get(Delivery, delivery_id)
    assert (delivery.status, delivery.reason) == ("SUPPRESSED", "campaign_cancelled")
    assert smtp_server.messages == []


def test_a_paused_campaigns_delivery_waits_unclaimed_and_is_handed_back(app, smtp_server):
    delivery_id = campaign_email(campaign_with_status("paused"), status="PENDING", dead_lettered_at=None)
    report = deliver([delivery_id])
    assert report.counts["paused"] == 1 and smtp_server.messages == []
    assert db.session.get(Delivery, delivery_id).status == "PENDING"
    [(priority, at)] = report.later
    assert at > utcnow()


def test_an_ended_campaigns_retry_is_suppressed(app, smtp_server):
    campaign_id = campaign_with_status("running", ends_at=utcnow() + timedelta(hours=1))
    db.session.get(Campaign, campaign_id).ends_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    delivery_id = campaign_email(campaign_id, status="PENDING", dead_lettered_at=None)
    assert deliver([delivery_id]).counts["suppressed:campaign_ended"] == 1
    assert smtp_server.messages == []


def test_a_running_campaigns_delivery_is_sent(app, smtp_server):
    delivery_id = campaign_email(campaign_with_status("running"), status="PENDING", dead_lettered_at=None)
    assert deliver([delivery_id]).statuses[delivery_id] == "DISPATCHED"
    assert len(smtp_server.messages) == 1


def test_origins_round_trip():
    assert origin.parse(origin.of_campaign(12)) == ("campaign", 12)
    assert origin.parse(origin.of_rule(7)) == ("rule", 7)
    assert origin.parse("api") == ("api", None)
    assert origin.parse(None) == ("api", None)
