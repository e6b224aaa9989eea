"""Broadcasts: an in-app-only send to more recipients than HERALD_BROADCAST_THRESHOLD is stored once and fanned
out on read. Every inbox surface merges it for exactly the readers its audience holds at read time."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.broadcasts import launch as launch_module
from app.broadcasts import reading
from app.campaigns import store as campaigns
from app.extensions import db
from app.inbox import store
from app.models import Audience, Broadcast, Campaign, CampaignBatch, Notification, Preference, Recipient
from app.models.types import utcnow
from app.realtime.hub import RESYNC
from app.realtime.publish import broadcast_channel
from app.realtime.stream import replay
from app.redis_client import get_redis
from tests.factories import make_notification, make_recipient, make_staff, make_template
from tests.integration.test_console_auth import sign_in
from tests.integration.test_stream import Stream, fast_heartbeat, signed_in_client  # noqa: F401  (fixture)
from tests.integration.test_user_tokens_embed import bearer, token

PRO = {
    "all": [
        {"field": "attributes.plan", "op": "=", "value": "pro"},
        {"field": "attributes.age", "op": ">=", "value": 18},
    ]
}


@pytest.fixture
def threshold(app, monkeypatch):
    monkeypatch.setitem(app.config, "BROADCAST_THRESHOLD", 3)
    return 3


def pro(name: str, **fields) -> Recipient:
    return make_recipient(external_id=name, attributes={"plan": "pro", "age": 30}, **fields)


def people() -> dict[str, Recipient]:
    """Four in the audience, and one just outside each of its conditions and rules."""
    made = {name: pro(name) for name in ("a1", "a2", "a3", "a4")}
    made["free"] = make_recipient(external_id="free", attributes={"plan": "free", "age": 30})
    made["minor"] = make_recipient(external_id="minor", attributes={"plan": "pro", "age": 17})
    made["no_age"] = make_recipient(external_id="no_age", attributes={"plan": "pro"})
    made["stopped"] = pro("stopped", hard_stop=True)
    made["opted_out"] = pro("opted_out")
    made["inbox_off"] = pro("inbox_off")
    db.session.add(Preference(recipient_id=made["opted_out"].id, channel="in_app", category="news", enabled=False))
    db.session.add(Preference(recipient_id=made["inbox_off"].id, channel="in_app", category="*", enabled=False))
    db.session.commit()
    return made


def send_to_pro(api, **fields):
    db.session.add(Audience(name="pros", filter=PRO))
    db.session.commit()
    body = {
        "audience": "pros",
        "notification": {
            "type": "marketing",
            "category": "news",
            "title": "Big news",
            "body": "We launched",
            "channels": ["in_app"],
            **fields,
        },
    }
    response = api.post("/v1/notifications/bulk", json=body)
    assert response.status_code == 202, response.json
    return response.json["run_id"]


def inbox(client, app, user_id: str) -> dict:
    response = client.get("/inbox/api/notifications", headers=bearer(token(app, user_id)))
    assert response.status_code == 200
    return response.json


def headlines(client, app, user_id: str) -> list[str]:
    return [e["headline"] for e in inbox(client, app, user_id)["entries"]]


def test_a_large_in_app_send_is_one_row_seen_only_by_its_audience(app, client, api, run_jobs, threshold):
    people()
    run_id = send_to_pro(api)
    run_jobs()
    assert db.session.scalar(select(func.count()).select_from(Broadcast)) == 1
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0
    assert db.session.scalar(select(func.count()).select_from(CampaignBatch)) == 0
    broadcast = db.session.scalar(select(Broadcast))
    assert broadcast.campaign_id == run_id and broadcast.targeted == 7  # the filter at launch; routing at read
    for name in ("a1", "a2", "a3", "a4"):
        page = inbox(client, app, name)
        assert [e["headline"] for e in page["entries"]] == ["Big news"] and page["unread_count"] == 1
    for name in ("free", "minor", "no_age", "stopped", "opted_out", "inbox_off"):
        page = inbox(client, app, name)
        assert page["entries"] == [] and page["unread_count"] == 0, name
    late = pro("late")  # created after the launch: not in the audience
    assert headlines(client, app, late.external_id) == []
    assert db.session.get(Campaign, run_id).status == "running"


def test_at_or_below_the_threshold_the_send_fans_out_as_before(app, api, run_jobs, monkeypatch):
    monkeypatch.setitem(app.config, "BROADCAST_THRESHOLD", 7)  # the audience is 7
    people()
    send_to_pro(api)
    run_jobs()
    assert db.session.scalar(select(func.count()).select_from(Broadcast)) == 0
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 7


def test_a_send_with_another_channel_is_never_a_broadcast(app, api, run_jobs, threshold):
    people()
    send_to_pro(api, channels=["in_app", "email"])
    run_jobs()
    assert db.session.scalar(select(func.count()).select_from(Broadcast)) == 0


def test_the_audience_is_evaluated_when_the_inbox_is_read(app, client, api, run_jobs, threshold):
    ids = {name: r.id for name, r in people().items()}
    send_to_pro(api)
    run_jobs()
    change = update(Recipient)
    db.session.execute(change.where(Recipient.id == ids["a1"]).values(attributes={"plan": "free", "age": 30}))
    db.session.execute(change.where(Recipient.id == ids["a2"]).values(hard_stop=True))
    db.session.add(Preference(recipient_id=ids["a3"], channel="in_app", category="news", enabled=False))
    # now inside the filter, and existed at launch
    db.session.execute(change.where(Recipient.id == ids["minor"]).values(attributes={"plan": "pro", "age": 18}))
    db.session.commit()
    assert (
        headlines(client, app, "a1") == [] and headlines(client, app, "a2") == [] and headlines(client, app, "a3") == []
    )
    assert headlines(client, app, "minor") == ["Big news"] and headlines(client, app, "a4") == ["Big news"]


def test_read_archive_and_read_all_materialise_one_copy_per_reader(app, client, api, run_jobs, threshold):
    made = {name: r.id for name, r in people().items()}
    run_id = send_to_pro(api)
    run_jobs()
    entry = inbox(client, app, "a1")["entries"][0]
    for _ in range(2):  # idempotent
        answer = client.post("/inbox/api/read", json={"ids": entry["ids"]}, headers=bearer(token(app, "a1")))
        assert answer.status_code == 200 and answer.json["unread_count"] == 0
    copy = db.session.scalar(select(Notification).where(Notification.recipient_id == made["a1"]))
    assert copy.id == entry["ids"][0] and copy.read_at is not None and copy.campaign_id == run_id
    assert copy.origin == f"campaign:{run_id}" and copy.title == "Big news"
    page = inbox(client, app, "a1")
    assert page["entries"][0]["unread"] is False and page["unread_count"] == 0

    a2_ids = inbox(client, app, "a2")["entries"][0]["ids"]
    assert client.post("/inbox/api/archive", json={"ids": a2_ids}, headers=bearer(token(app, "a2"))).status_code == 200
    assert headlines(client, app, "a2") == []
    assert client.post("/inbox/api/read-all", headers=bearer(token(app, "a3"))).json["unread_count"] == 0
    assert inbox(client, app, "a3")["unread_count"] == 0
    # someone else's broadcast id marks nothing and makes no copy
    foreign = reading.item_id(db.session.scalar(select(Broadcast.id)), made["a4"])
    client.post("/inbox/api/read", json={"ids": [foreign]}, headers=bearer(token(app, "free")))
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 3
    assert inbox(client, app, "a4")["unread_count"] == 1


def test_cancelling_hides_it_from_readers_without_a_copy(app, client, api, run_jobs, threshold):
    people()
    run_id = send_to_pro(api)
    run_jobs()
    ids = inbox(client, app, "a1")["entries"][0]["ids"]
    client.post("/inbox/api/read", json={"ids": ids}, headers=bearer(token(app, "a1")))
    campaigns.cancel(db.session.get(Campaign, run_id), make_staff())
    assert headlines(client, app, "a2") == [] and inbox(client, app, "a2")["unread_count"] == 0
    assert headlines(client, app, "a1") == ["Big news"]  # a1's copy is theirs


def test_a_broadcast_merges_into_pages_by_time_and_the_cursor_never_repeats_it(app, client, api, run_jobs, threshold):
    made = people()
    for minutes in (30, 20):
        make_notification(made["a1"], title=f"older {minutes}", inbox_at=utcnow() - timedelta(minutes=minutes))
    a1 = made["a1"].id
    send_to_pro(api)
    run_jobs()
    make_notification(db.session.get(Recipient, a1), title="newer", inbox_at=utcnow() + timedelta(seconds=1))
    seen, cursor = [], None
    while True:
        items, cursor = store.entries_page(a1, 1, cursor)
        seen += [n.title for n in items]
        if cursor is None:
            break
    assert seen == ["newer", "Big news", "older 20", "older 30"]
    assert store.unread_count(a1) == 4


def test_a_topic_send_over_the_threshold_is_a_broadcast_and_the_console_shows_it(app, client, api, run_jobs, threshold):
    api.put("/v1/topics/team", json={"name": "Team"})
    api.put("/v1/topics/team/subscribers", json={"user_ids": ["t1", "t2", "t3", "t4", "t5"]})
    make_recipient(external_id="outsider")
    body = {
        "topic": "team",
        "exclude": ["t5"],
        "type": "transactional",
        "category": "team",
        "title": "Standup",
        "channels": ["in_app"],
    }
    run_id = api.post("/v1/notifications", json=body).json["run_id"]
    run_jobs()
    assert db.session.scalar(select(Broadcast.targeted)) == 4
    assert headlines(client, app, "t1") == ["Standup"]
    assert headlines(client, app, "t5") == [] and headlines(client, app, "outsider") == []
    client.post("/inbox/api/read-all", headers=bearer(token(app, "t1")))
    make_staff()
    sign_in(client)
    page = client.get(f"/console/campaigns/{run_id}").get_data(as_text=True)
    assert 'data-testid="broadcast-panel"' in page
    assert 'data-testid="broadcast-targeted">4<' in page and 'data-testid="broadcast-seen">1<' in page


@pytest.mark.usefixtures("fast_heartbeat")
def test_a_launch_reaches_open_streams_of_its_audience_within_a_second_and_no_one_else(app, api, run_jobs, threshold):
    ids = {name: r.id for name, r in people().items()}
    streams = {name: Stream(signed_in_client(app, name)) for name in ("a1", "free", "stopped")}
    try:
        for stream in streams.values():
            stream.read_until(lambda chunk: chunk.startswith("retry:"))
        send_to_pro(api)
        run_jobs()
        launched = time.monotonic()
        [event] = streams["a1"].events(1, timeout=1.0)
        assert time.monotonic() - launched < 1.0
        broadcast_id = db.session.scalar(select(Broadcast.id))
        assert f"id:{reading.item_id(broadcast_id, ids['a1'])}" in event and event.startswith("event:notification")
        for name in ("free", "stopped"):
            heard, deadline = [], time.monotonic() + 1.5
            while time.monotonic() < deadline:
                heard.append(next(streams[name].chunks).decode())
            assert all(chunk == ": keepalive\n\n" for chunk in heard), (name, heard)
    finally:
        for stream in streams.values():
            stream.close()


def test_a_reconnect_replays_a_broadcast_launched_while_away_and_resumes_after_one(app, api, run_jobs, threshold):
    ids = {name: r.id for name, r in people().items()}
    before = make_notification(
        db.session.get(Recipient, ids["a1"]), title="before", inbox_at=utcnow() - timedelta(minutes=1)
    ).id
    send_to_pro(api)
    run_jobs()
    item = reading.item_id(db.session.scalar(select(Broadcast.id)), ids["a1"])
    [event] = replay(ids["a1"], before)
    assert f"id:{item}" in event and "Big news" in event
    assert replay(ids["a1"], item) == [] and replay(ids["free"], item) == [RESYNC]


def test_a_console_campaign_becomes_a_broadcast_rendered_for_each_reader(app, client, run_jobs, threshold):
    people()
    template = make_template(
        "launch",
        variants={"en": {"in_app": {"title": "Hi {{ recipient.id }}", "body": "Plan {{ recipient.attributes.plan }}"}}},
        category="news",
        type="marketing",
    )
    staff = make_staff()
    campaign = Campaign(
        name="Launch",
        template_id=template.id,
        channels=["in_app"],
        audience_filter=PRO,
        schedule="now",
        status="draft",
        planned=0,
        created_by=staff.id,
    )
    db.session.add(campaign)
    db.session.commit()
    assert campaigns.launch(campaign, staff) == []
    run_jobs()
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0
    [entry] = inbox(client, app, "a2")["entries"]
    assert entry["headline"] == "Hi a2" and entry["body"] == "Plan pro"
    assert headlines(client, app, "opted_out") == [] and headlines(client, app, "free") == []


def test_the_api_marks_a_broadcast_entry_read_for_its_reader_only(app, api, run_jobs, threshold):
    ids = {name: r.id for name, r in people().items()}
    send_to_pro(api)
    run_jobs()
    listed = api.get("/v1/users/a1/notifications").json
    assert [i["title"] for i in listed["items"]] == ["Big news"] and listed["unread_count"] == 1
    item = listed["items"][0]["id"]
    assert api.patch(f"/v1/notifications/{item}/read").status_code == 200
    assert api.get("/v1/users/a1/notifications").json["unread_count"] == 0
    outsider = reading.item_id(db.session.scalar(select(Broadcast.id)), ids["free"])
    assert api.patch(f"/v1/notifications/{outsider}/read").status_code == 404
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


def test_a_crash_after_storing_is_announced_and_counted_by_the_rerun_without_batches(app, api, run_jobs, threshold):
    people()
    run_id = send_to_pro(api)
    campaign = db.session.get(Campaign, run_id)
    launch_module._store(campaign, utcnow())  # the first run died right after this commit
    listener = get_redis().pubsub()
    listener.subscribe(broadcast_channel())
    assert listener.get_message(timeout=2)["type"] == "subscribe"
    run_jobs()  # the planning job (RQ re-runs it after a crash)
    message = listener.get_message(timeout=2)
    listener.close()
    assert message is not None and json.loads(message["data"])["data"] == {
        "broadcast": db.session.scalar(select(Broadcast.id))
    }
    assert db.session.scalar(select(Broadcast.targeted)) == 7
    assert db.session.scalar(select(func.count()).select_from(CampaignBatch)) == 0
    assert db.session.scalar(select(func.count()).select_from(Broadcast)) == 1


def test_readers_racing_to_read_and_archive_write_one_copy(app, api, run_jobs, threshold):
    ids = {name: r.id for name, r in people().items()}
    send_to_pro(api)
    run_jobs()
    item = reading.item_id(db.session.scalar(select(Broadcast.id)), ids["a1"])
    db.session.remove()
    barrier = threading.Barrier(4)

    def act(action):
        with app.test_request_context():
            barrier.wait()
            action(ids["a1"], [item])
            db.session.remove()

    threads = [threading.Thread(target=act, args=(a,)) for a in (store.mark_ids_read, store.archive) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    copies = db.session.scalars(select(Notification).where(Notification.recipient_id == ids["a1"])).all()
    # one copy, archived (whether a read landed first is the race's to decide, as for any row)
    assert [c.id for c in copies] == [item] and copies[0].archived_at is not None
    assert store.unread_count(ids["a1"]) == 0
