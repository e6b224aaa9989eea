"""Topics over /v1: membership in batches, paging, a user's topics, and sends to a topic through a campaign run."""

import re

from sqlalchemy import func, select

from app.campaigns import progress
from app.delivery.constants import DELIVERED
from app.extensions import db
from app.models import Campaign, Delivery, Notification, Recipient
from app.redis_client import get_redis
from tests.factories import make_recipient


def make_topic(api, key="team", **fields):
    return api.put(f"/v1/topics/{key}", json={"name": "The team", **fields})


def topic_send(api, headers=None, **fields):
    body = {
        "topic": "team",
        "type": "transactional",
        "category": "comments",
        "title": "Ana commented",
        "body": "Looks good",
        "channels": ["in_app"],
        **fields,
    }
    return api.post("/v1/notifications", json=body, headers=headers)


def test_put_topic_creates_then_updates_and_get_reads_it(api):
    created = make_topic(api, user_can_leave=False)
    assert created.status_code == 201 and created.json["user_can_leave"] is False and created.json["subscribers"] == 0
    updated = api.put("/v1/topics/team", json={"name": "Team Herald"})
    assert (
        updated.status_code == 200 and updated.json["name"] == "Team Herald" and updated.json["user_can_leave"] is True
    )
    assert api.get("/v1/topics/team").json["name"] == "Team Herald"
    assert api.get("/v1/topics/nobody").status_code == 404


def test_bad_topic_key_or_body_is_400_naming_the_field(api):
    response = api.put("/v1/topics/bad key!", json={"name": "x"})
    assert response.status_code == 400 and response.json["error"]["fields"][0]["field"] == "key"
    response = api.put("/v1/topics/team", json={"name": "", "user_can_leave": 1})
    assert {f["field"] for f in response.json["error"]["fields"]} == {"name", "user_can_leave"}


def test_subscribers_are_added_in_a_batch_creating_unknown_users_and_counted_once(api):
    make_topic(api)
    make_recipient(external_id="ana")
    response = api.put("/v1/topics/team/subscribers", json={"user_ids": ["ana", "bo", "bo", "cy"]})
    assert response.status_code == 200
    assert response.json == {"added": 3, "removed": 0, "created_users": ["bo", "cy"], "subscribers": 3}
    again = api.put("/v1/topics/team/subscribers", json={"user_ids": ["ana", "bo"]})
    assert again.json["added"] == 0 and again.json["created_users"] == [] and again.json["subscribers"] == 3
    assert db.session.scalar(select(func.count()).select_from(Recipient)) == 3
    removed = api.delete("/v1/topics/team/subscribers", json={"user_ids": ["bo", "ghost"]})
    assert removed.json["removed"] == 1 and removed.json["subscribers"] == 2


def test_subscriber_batch_over_the_cap_is_400_naming_the_limit(api):
    make_topic(api)
    response = api.put("/v1/topics/team/subscribers", json={"user_ids": [f"u{i}" for i in range(1001)]})
    assert response.status_code == 400
    field = response.json["error"]["fields"][0]
    assert field["field"] == "user_ids" and "1000" in field["message"]
    assert api.put("/v1/topics/nope/subscribers", json={"user_ids": ["a"]}).status_code == 404


def test_subscribers_page_by_cursor_and_users_list_their_topics(api):
    make_topic(api)
    make_topic(api, key="digest", name="Weekly digest")
    api.put("/v1/topics/team/subscribers", json={"user_ids": [f"u{i:02}" for i in range(7)]})
    api.put("/v1/topics/digest/subscribers", json={"user_ids": ["u03"]})
    seen, cursor = [], None
    while True:
        page = api.get(
            "/v1/topics/team/subscribers", query_string={"limit": 3, **({"cursor": cursor} if cursor else {})}
        ).json
        seen += [item["user_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"u{i:02}" for i in range(7)]
    assert api.get("/v1/topics/team/subscribers", query_string={"cursor": "x"}).status_code == 400
    topics = api.get("/v1/users/u03/topics").json["topics"]
    assert [t["key"] for t in topics] == ["team", "digest"] or [t["key"] for t in topics] == ["digest", "team"]
    assert {t["name"] for t in topics} == {"The team", "Weekly digest"}
    assert api.get("/v1/users/ghost/topics").status_code == 404


def test_erasing_a_user_removes_their_subscriptions(api):
    make_topic(api)
    api.put("/v1/topics/team/subscribers", json={"user_ids": ["ana", "bo"]})
    assert api.delete("/v1/users/ana").status_code == 204
    assert api.get("/v1/topics/team").json["subscribers"] == 1


def test_topic_send_fans_out_through_a_run_skipping_the_excluded(api, run_jobs):
    make_topic(api)
    api.put("/v1/topics/team/subscribers", json={"user_ids": ["ana", "bo", "cy", "di"]})
    response = topic_send(api, exclude=["ana"], data={"post": 7})
    assert response.status_code == 202 and set(response.json) == {"run_id", "status"}
    run_id = response.json["run_id"]
    run_jobs()
    notes = db.session.execute(
        select(Recipient.external_id, Notification.title, Notification.origin, Notification.data).join(
            Notification, Notification.recipient_id == Recipient.id
        )
    ).all()
    assert sorted(n[0] for n in notes) == ["bo", "cy", "di"]
    assert {(n[1], n[2]) for n in notes} == {("Ana commented", f"campaign:{run_id}")} and notes[0][3] == {"post": 7}
    assert db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == DELIVERED)) == 3
    run = db.session.get(Campaign, run_id)
    assert run.status == "finished" and run.planned == 3 and run.template_id is None
    counters = progress.parse(get_redis().hgetall(progress.progress_key(run_id)))[1]
    assert counters["notified"] == 3 and counters["sent:in_app"] == 3
    inbox = api.get("/v1/users/bo/notifications").json["items"]
    assert inbox[0]["title"] == "Ana commented"


def test_topic_send_replays_the_same_run_and_a_different_body_is_409(api, run_jobs):
    make_topic(api)
    api.put("/v1/topics/team/subscribers", json={"user_ids": ["ana", "bo"]})
    first = topic_send(api, headers={"Idempotency-Key": "comment-1"})
    replay = topic_send(api, headers={"Idempotency-Key": "comment-1"})
    assert first.status_code == replay.status_code == 202 and first.json["run_id"] == replay.json["run_id"]
    conflict = topic_send(api, headers={"Idempotency-Key": "comment-1"}, body="Changed")
    assert conflict.status_code == 409
    single = api.post(
        "/v1/notifications",
        headers={"Idempotency-Key": "comment-1"},
        json={"user_id": "ana", "type": "transactional", "title": "x", "channels": ["in_app"]},
    )
    assert single.status_code == 409
    run_jobs()
    assert db.session.scalar(select(func.count()).select_from(Campaign)) == 1
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 2


def test_exactly_one_of_user_id_and_topic(api):
    both = topic_send(api, user_id="ana")
    assert both.status_code == 400 and both.json["error"]["fields"][0]["field"] == "topic"
    neither = api.post("/v1/notifications", json={"type": "transactional", "title": "x", "channels": ["in_app"]})
    assert neither.status_code == 400 and neither.json["error"]["fields"][0]["field"] == "user_id"
    stray = api.post(
        "/v1/notifications",
        json={"user_id": "ana", "exclude": ["bo"], "type": "transactional", "title": "x", "channels": ["in_app"]},
    )
    assert stray.status_code == 400 and stray.json["error"]["fields"][0]["field"] == "exclude"
    unknown = topic_send(api, topic="nobody")
    assert unknown.status_code == 404 and unknown.json["error"]["code"] == "unknown_topic"


def test_a_run_stored_while_redis_was_down_is_planned_by_the_reaper(api, run_jobs):
    from datetime import timedelta

    from app.config import QUEUE_NAMES
    from app.models.types import utcnow
    from app.tasks import get_queue
    from jobs.maintenance import redrive_stuck_work

    make_topic(api)
    api.put("/v1/topics/team/subscribers", json={"user_ids": ["ana", "bo"]})
    run_id = topic_send(api).json["run_id"]
    for name in QUEUE_NAMES:  # as if Redis had lost the planning job (or been down when the run was stored)
        get_queue(name).empty()
    assert redrive_stuck_work(utcnow(), lease_seconds=120)["runs"] == 0  # not stale yet
    assert redrive_stuck_work(utcnow() + timedelta(minutes=11), lease_seconds=120)["runs"] == 1
    run_jobs()
    assert db.session.get(Campaign, run_id).status == "finished"
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 2


def test_the_console_shows_a_topic_send_as_a_run_with_its_progress(api, client, run_jobs):
    from tests.factories import make_staff

    make_topic(api)
    api.put("/v1/topics/team/subscribers", json={"user_ids": ["ana", "bo"]})
    run_id = topic_send(api).json["run_id"]
    run_jobs()
    make_staff(email="mia@example.com", password="correct horse battery", role="marketer")
    client.post("/console/login", data={"email": "mia@example.com", "password": "correct horse battery"})
    topic_page = client.get("/console/topics/team").get_data(as_text=True)
    assert 'data-testid="subscriber-count">2<' in topic_page
    link = re.search(rf'href="([^"]*/campaigns/{run_id})"', topic_page).group(1)  # wherever the campaign pages live
    page = client.get(link)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "API run: Ana commented — Looks good" in html and "finished" in html


def test_a_forged_test_send_of_an_api_run_is_refused_not_a_500(api, client):
    """A run is never a draft, so its page offers no test send; a POST made anyway is refused (422), sends nothing."""
    from tests.factories import make_staff

    make_topic(api)
    run_id = topic_send(api).json["run_id"]
    make_staff(email="mia@example.com", password="correct horse battery", role="marketer")
    client.post("/console/login", data={"email": "mia@example.com", "password": "correct horse battery"})
    topic_page = client.get("/console/topics/team").get_data(as_text=True)
    link = re.search(rf'href="([^"]*/campaigns/{run_id})"', topic_page).group(1)
    response = client.post(f"{link}/test", data={"user_ids": "ana"})
    assert response.status_code == 422
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0


def test_a_transactional_topic_send_fans_out_on_its_priority_queue_not_behind_campaigns(api):
    from app.tasks import get_queue
    from jobs.campaigns import plan_campaign

    make_topic(api)
    api.put("/v1/topics/team/subscribers", json={"user_ids": ["ana", "bo"]})
    urgent = topic_send(api, priority="high").json["run_id"]
    news = topic_send(api, type="marketing", category="news").json["run_id"]
    plan_campaign(urgent)
    plan_campaign(news)

    def batches_on(queue):
        return [job.args[0] for job in get_queue(queue).jobs if job.func_name == "jobs.campaigns.run_batch"]

    assert batches_on("high") == [urgent] and batches_on("low") == [news]
