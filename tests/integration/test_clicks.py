"""Click tracking end to end: links in real emails lead through Herald, clicks are counted once, campaigns show them."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from sqlalchemy.exc import OperationalError

from app.campaigns import store
from app.delivery.tracking import click_token
from app.extensions import db
from app.inbox import clicks
from app.models import Notification
from tests.factories import make_recipient, make_template
from tests.integration.test_campaigns import marketer, new_campaign, template  # noqa: F401 (fixtures)
from tests.integration.test_inbox_pages import delivered, sign_in

SHOP = "https://shop.example/sale?utm_source=mail&season=winter"


def notification(notification_id: str) -> Notification:
    db.session.expire_all()
    return db.session.get(Notification, notification_id)


def send_sale_email(api, run_jobs, smtp_server) -> str:
    make_template(
        "sale",
        type="marketing",
        category="promo",
        variants={
            "en": {
                "email": {
                    "subject": "Winter sale",
                    "html": '<p><a href="{{ data.url }}">Shop the sale</a></p>',
                    "text": "Shop the sale: {{ data.url }}",
                }
            }
        },
    )
    make_recipient(external_id="ana", email="ana@example.com")
    response = api.post(
        "/v1/notifications",
        json={
            "user_id": "ana",
            "type": "marketing",
            "category": "promo",
            "template": "sale",
            "channels": ["email"],
            "data": {"url": SHOP},
        },
    )
    assert response.status_code == 202, response.json
    run_jobs()
    return response.json["id"]


def test_email_links_lead_through_herald_and_the_first_click_is_kept(app, api, client, run_jobs, smtp_server):
    notification_id = send_sale_email(api, run_jobs, smtp_server)
    [message] = smtp_server.messages
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    [html_link] = re.findall(r'href="([^"]+)"', html)
    [text_link] = re.findall(r"https?://\S+", text)
    base = app.config["BASE_URL"]
    assert html_link.startswith(f"{base}/c/") and text_link.startswith(f"{base}/c/") and SHOP not in html + text
    assert message["List-Unsubscribe"] and "/unsubscribe/" in message["List-Unsubscribe"], (
        "Herald's own links stay as they are"
    )

    response = client.get(urlparse(html_link).path)
    assert (response.status_code, response.headers["Location"]) == (302, SHOP)
    assert response.headers["Cache-Control"] == "no-store"
    first = notification(notification_id)
    assert first.clicked_channel == "email" and first.clicked_at is not None

    assert client.get(urlparse(text_link).path).headers["Location"] == SHOP
    assert notification(notification_id).clicked_at == first.clicked_at, "later clicks do not move the first one"
    seen = api.get(f"/v1/notifications/{notification_id}").json
    assert seen["clicked_channel"] == "email" and seen["clicked_at"] is not None


def test_a_forged_or_foreign_link_is_a_clear_404_and_redirects_nowhere(app, client):
    forged = click_token("somebody-else's-secret-key", "n" * 32, "email", "https://evil.example/")
    for path in (
        f"/c/{forged}",
        "/c/garbage",
        f"/c/{click_token(app.config['SECRET_KEY'], 'n' * 32, 'email', 'javascript:alert(1)')}",
    ):
        response = client.get(path)
        assert response.status_code == 404 and "Location" not in response.headers
        assert "This link is not valid." in response.get_data(as_text=True)


def test_the_reader_still_gets_to_the_page_when_the_click_cannot_be_recorded(app, client, monkeypatch):
    def database_down(*_args):
        raise OperationalError("UPDATE notifications", {}, Exception("connection refused"))

    monkeypatch.setattr(clicks, "record_click", database_down)
    token = click_token(app.config["SECRET_KEY"], "n" * 32, "push", SHOP)
    response = client.get(f"/c/{token}")
    assert (response.status_code, response.headers["Location"]) == (302, SHOP)


def test_links_of_an_erased_notification_still_lead_to_their_page(app, client):
    response = client.get(f"/c/{click_token(app.config['SECRET_KEY'], 'f' * 32, 'email', SHOP)}")
    assert (response.status_code, response.headers["Location"]) == (302, SHOP)


def test_with_tracking_off_emails_carry_the_links_as_written(app, api, run_jobs, smtp_server):
    app.config["TRACK_CLICKS"] = False
    try:
        send_sale_email(api, run_jobs, smtp_server)
    finally:
        app.config["TRACK_CLICKS"] = True
    [message] = smtp_server.messages
    assert f'href="{SHOP.replace("&", "&amp;")}"' in message.get_body(("html",)).get_content()


def test_opening_an_inbox_entry_with_a_link_is_an_in_app_click(app, client):
    ana = make_recipient(external_id="ana")
    with_link = delivered(ana, 2, title="Sale", data={"url": SHOP})
    without = delivered(ana, 1, title="Note")
    sign_in(client, app, "ana")
    client.post("/inbox/open", data={"ids": [with_link.id]})
    client.post("/inbox/open", data={"ids": [without.id]})
    assert notification(with_link.id).clicked_channel == "in_app"
    assert notification(without.id).clicked_at is None, "opening an entry with nowhere to go is reading, not clicking"


def test_campaign_progress_counts_clicked_recipients(app, client, run_jobs, smtp_server, template, marketer):  # noqa: F811
    for n in range(3):
        make_recipient(external_id=f"c{n}", email=f"c{n}@example.com")
    campaign = new_campaign(template, marketer, channels=["in_app"])
    campaign_id = campaign.id
    store.launch(campaign, marketer)
    run_jobs()
    first, second = db.session.query(Notification.id).filter_by(campaign_id=campaign_id).limit(2).all()
    for notification_id in (first[0], first[0], second[0]):
        client.get(f"/c/{click_token(app.config['SECRET_KEY'], notification_id, 'email', SHOP)}")
    assert store.engagement(campaign_id) == (0, 2)
    view = store.campaign_progress(db.session.get(type(campaign), campaign_id))
    assert (view.read, view.clicked) == (0, 2)
