"""The campaign form names templates: in the template choice and in the list of what each template can send."""

from __future__ import annotations

import re

from tests.factories import make_staff, make_template

PASSWORD = "correct horse battery"


def test_campaign_form_lists_templates_by_name_with_key_version_and_channels(app, client):
    make_staff(email="mia@example.com", password=PASSWORD, role="marketer")
    digest = make_template(
        "weekly_digest",
        name="Weekly digest",
        type="marketing",
        category="marketing",
        variants={
            "en": {
                "in_app": {"title": "This week", "body": "News"},
                "email": {"subject": "This week", "text": "News", "html": "<p>News</p>"},
            }
        },
    )
    make_template(
        "security_alert",
        name="Security alert",
        type="security",
        category="security",
        variants={"en": {"sms": {"text": "New sign-in"}}},
    )
    client.post("/console/login", data={"email": "mia@example.com", "password": PASSWORD})

    html = client.get("/console/campaigns/new").get_data(as_text=True)

    assert f'<option value="{digest.id}">Weekly digest (weekly_digest)</option>' in html
    offer = html[
        html.index('data-testid="channel-offer"') : html.index("</ul>", html.index('data-testid="channel-offer"'))
    ]
    assert re.search(
        r"Weekly digest</span>\s*<span class=\"muted\">\(weekly_digest, v1\)</span>:\s*In-app, Email", offer
    )
    assert re.search(r"Security alert</span>\s*<span class=\"muted\">\(security_alert, v1\)</span>:\s*SMS", offer)
    assert not re.search(r"#\d+:", html)
