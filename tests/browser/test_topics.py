"""Topics in a real browser: staff browse them in the console; an end user leaves one from the preferences page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from app.extensions import db
from app.inbox.auth import user_token
from app.models import Recipient
from app.topics import store
from tests.factories import make_staff

EMAIL = "mia@example.com"
PASSWORD = "correct horse battery"


@pytest.fixture
def topics(app):
    with app.app_context():
        make_staff(email=EMAIL, password=PASSWORD, role="marketer")
        team, _ = store.upsert_topic("team", "The team", user_can_leave=False)
        digest, _ = store.upsert_topic("digest", "Weekly digest", user_can_leave=True)
        store.add_subscribers(team, ["ana"] + [f"member-{n:03}" for n in range(59)])
        store.add_subscribers(digest, ["ana", "bo"])


def test_an_end_user_leaves_a_topic_that_allows_it_and_cannot_leave_one_that_does_not(page: Page, app, topics):
    page.goto(f"/inbox?user=ana&token={user_token(app.config['INBOX_SECRET'], 'ana')}")
    expect(page).to_have_url(re.compile(r"/inbox$"))
    page.goto("/inbox/preferences")
    mine = page.get_by_test_id("my-topics")
    expect(mine.locator("li")).to_have_count(2)
    expect(mine.locator("li[data-topic=team]")).to_contain_text("cannot be left")
    expect(mine.locator("li[data-topic=team]").get_by_role("button")).to_have_count(0)
    page.get_by_role("button", name="Leave Weekly digest").click()
    expect(page.get_by_test_id("topics-message")).to_have_text("You left the topic.")
    expect(mine.locator("li")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/inbox/preferences$"))  # swapped in place by htmx, no navigation
    with app.app_context():
        ana = db.session.query(Recipient).filter_by(external_id="ana").one()
        assert [t.key for t, _ in store.topics_of(ana.id)] == ["team"]
        # The server refuses a forged leave of a topic that does not allow it, whatever the page shows.
        assert store.leave(ana.id, "team") is False


def test_staff_browse_topics_with_counts_and_page_through_subscribers(page: Page, topics):
    page.goto("/console/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Topics", exact=True).click()
    expect(page).to_have_url(re.compile(r"/console/topics$"))
    rows = page.get_by_test_id("topic-list").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="The team").get_by_test_id("subscriber-count")).to_have_text("60")
    page.get_by_role("link", name="The team").click()
    table = page.get_by_test_id("subscribers").locator("tbody tr th")
    expect(table).to_have_count(50)
    page.get_by_test_id("more-subscribers").click()
    expect(table).to_have_count(60)
    expect(page.get_by_test_id("more-subscribers")).to_have_count(0)
