"""A recipient's digest frequency per category (off / hourly / daily), set through the API and the preferences
page, and honoured by the digest step: every trigger still lands in exactly one digest."""

from __future__ import annotations

from datetime import time as clock
from datetime import timedelta

from sqlalchemy import select, update

from app.campaigns.planning import local_wave_time
from app.extensions import db
from app.models import DigestPreference, Notification, WorkflowDigest, WorkflowRun, WorkflowStepRun
from app.models.types import utcnow
from tests.factories import make_recipient
from tests.integration.test_inbox_pages import sign_in
from tests.integration.test_workflow_digest import digest_flow
from tests.integration.test_workflows import drain, trigger


def choose(api, user_id: str, frequency: str, category: str = "general"):
    response = api.put(
        f"/v1/users/{user_id}/preferences", json={"digests": [{"category": category, "frequency": frequency}]}
    )
    assert response.status_code == 200, response.json
    return response.json


def digests() -> list[WorkflowDigest]:
    db.session.expire_all()
    return list(db.session.scalars(select(WorkflowDigest).order_by(WorkflowDigest.id)))


def counts_sent() -> list[int]:
    return sorted(n.data["count"] for n in db.session.scalars(select(Notification)))


def test_off_sends_each_trigger_at_once_as_a_digest_of_one(api, run_jobs):
    digest_flow(api, window=3600)
    user = make_recipient().external_id
    choose(api, user, "off")
    for actor in ("Ana", "Bo", "Cy"):
        trigger(api, user, data={"actor": actor})
    drain(run_jobs)
    assert set(db.session.scalars(select(WorkflowRun.status))) == {"completed"}
    assert counts_sent() == [1, 1, 1]
    assert [(d.state, d.count) for d in digests()] == [("fired", 1)] * 3
    members = db.session.scalars(select(WorkflowStepRun.digest_id).where(WorkflowStepRun.kind == "digest")).all()
    assert len(set(members)) == 3  # each trigger in exactly one digest, its own


def test_hourly_holds_past_a_shorter_workflow_window_and_then_sends_every_trigger_once(api, run_jobs):
    digest_flow(api, window=1)
    user = make_recipient().external_id
    choose(api, user, "hourly")
    for actor in ("Ana", "Bo"):
        trigger(api, user, data={"actor": actor})
    drain(run_jobs)
    (digest,) = digests()
    assert digest.closes_at - digest.opened_at == timedelta(hours=1) and digest.count == 2
    owner = digest.owner_run_id
    db.session.execute(update(WorkflowRun).where(WorkflowRun.id == owner).values(next_at=utcnow()))
    db.session.commit()
    drain(run_jobs)  # the workflow's own second has long passed: still held
    assert db.session.get(WorkflowRun, owner).status == "running" and counts_sent() == []
    db.session.execute(update(WorkflowDigest).values(closes_at=utcnow()))  # as if the hour were over
    db.session.execute(update(WorkflowRun).where(WorkflowRun.id == owner).values(next_at=utcnow()))
    db.session.commit()
    drain(run_jobs)
    assert counts_sent() == [2]


def test_daily_closes_at_the_next_0900_in_the_recipients_zone(api, run_jobs):
    digest_flow(api, window=60)
    user = make_recipient(timezone="Asia/Tokyo").external_id
    choose(api, user, "daily")
    trigger(api, user, data={"actor": "Ana"})
    drain(run_jobs)
    (digest,) = digests()
    nine = local_wave_time(clock(9, 0), "Asia/Tokyo", digest.opened_at)
    assert digest.closes_at == max(nine, digest.opened_at + timedelta(seconds=60))
    assert db.session.get(WorkflowRun, digest.owner_run_id).next_at == digest.closes_at


def test_default_removes_the_choice_and_the_workflows_window_applies(api, run_jobs):
    digest_flow(api, window=120)
    user = make_recipient().external_id
    assert choose(api, user, "daily")["digests"] == [{"category": "general", "frequency": "daily"}]
    assert choose(api, user, "default")["digests"] == []
    assert db.session.scalar(select(DigestPreference)) is None
    trigger(api, user, data={"actor": "Ana"})
    drain(run_jobs)
    (digest,) = digests()
    assert digest.closes_at - digest.opened_at == timedelta(seconds=120)


def test_a_bad_frequency_or_category_is_a_400_naming_the_field(api):
    user = make_recipient().external_id
    response = api.put(
        f"/v1/users/{user}/preferences", json={"digests": [{"category": "general", "frequency": "weekly"}]}
    )
    assert response.status_code == 400 and response.json["error"]["fields"][0]["field"] == "digests.0.frequency"
    response = api.put(f"/v1/users/{user}/preferences", json={"digests": [{"category": "No Way", "frequency": "off"}]})
    assert response.status_code == 400 and response.json["error"]["fields"][0]["field"] == "digests.0.category"
    assert db.session.scalar(select(DigestPreference)) is None


def test_the_openapi_document_states_the_frequencies(api):
    spec = api.get("/v1/openapi.json").json
    item = spec["components"]["schemas"]["DigestItem"]
    assert item["properties"]["frequency"]["enum"] == ["default", "off", "hourly", "daily"]
    assert "pattern" in item["properties"]["category"]


def test_the_preferences_page_shows_and_saves_a_frequency_per_category(app, client, api):
    digest_flow(api, window=60)  # its template's category is "general"
    make_recipient(external_id="ana")
    sign_in(client, app, "ana")
    html = client.get("/inbox/preferences").get_data(as_text=True)
    assert 'name="digest-general"' in html and 'value="default" selected' in html
    response = client.post("/inbox/preferences", data={"digest-general": "hourly", "timezone": "Europe/Lisbon"})
    assert response.status_code == 303
    assert db.session.scalar(select(DigestPreference.frequency)) == "hourly"
    assert 'value="hourly" selected' in client.get("/inbox/preferences").get_data(as_text=True)
    response = client.post("/inbox/preferences", data={"digest-general": "weekly", "timezone": "Europe/Lisbon"})
    assert response.status_code == 400 and b"Some settings could not be saved" in response.data
    db.session.expire_all()
    assert db.session.scalar(select(DigestPreference.frequency)) == "hourly"
