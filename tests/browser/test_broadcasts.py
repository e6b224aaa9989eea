"""A broadcast in a real browser: an open inbox in its audience shows it live; a read mark persists (the reader's
copy is written); an open inbox outside the audience never shows it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from app.extensions import db
from app.models import Broadcast, Notification
from tests.browser.test_inbox import LIVE, headlines, new_context, open_inbox  # noqa: F401  (fixture)
from tests.factories import make_recipient


@pytest.fixture
def team(app, api, monkeypatch):
    monkeypatch.setitem(app.config, "BROADCAST_THRESHOLD", 1)  # the launch decision is made by run_jobs, here
    with app.app_context():
        make_recipient(external_id="bob")  # not subscribed
    api.put("/v1/topics/team", json={"name": "Team"})
    api.put("/v1/topics/team/subscribers", json={"user_ids": ["ana", "cy"]})


def test_an_open_inbox_shows_a_broadcast_live_and_its_read_mark_persists(
    app,
    live_server,
    team,
    api,
    run_jobs,
    new_context,  # noqa: F811  (the fixture imported above)
):
    ana, bob = open_inbox(new_context(), app, "ana"), open_inbox(new_context(), app, "bob")
    expect(ana.get_by_test_id("unread-count")).to_have_text("0")
    body = {
        "topic": "team",
        "type": "transactional",
        "category": "team",
        "title": "All hands at 3",
        "body": "Room 2",
        "channels": ["in_app"],
    }
    assert api.post("/v1/notifications", json=body).status_code == 202
    run_jobs()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Broadcast)) == 1
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 0

    expect(headlines(ana)).to_have_text(["All hands at 3"], timeout=LIVE)
    expect(ana.get_by_test_id("unread-count")).to_have_text("1")
    ana.get_by_test_id("inbox-entry").first.get_by_role("button", name="Mark as read").click()
    expect(ana.get_by_test_id("unread-count")).to_have_text("0")
    ana.reload()
    expect(headlines(ana)).to_have_text(["All hands at 3"])
    expect(ana.get_by_test_id("unread-count")).to_have_text("0")
    expect(ana.get_by_role("button", name="Mark as read")).to_have_count(0)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 1  # ana's copy, no one else's

    bob.reload()
    expect(bob.get_by_test_id("inbox-empty")).to_be_visible()
    expect(bob.get_by_test_id("unread-count")).to_have_text("0")
