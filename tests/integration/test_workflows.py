"""Workflows over /v1: definitions (versions, 400s naming step and field), triggers (idempotent), each step kind
run by the real worker on real Redis, cancel, and a delay that outlives the loss of every queued job."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from app.delivery.constants import DELIVERED, SUPPRESSED
from app.extensions import db
from app.inbox import store as inbox
from app.models import Delivery, Notification, WorkflowRun, WorkflowStepRun
from app.redis_client import get_redis
from app.workflows.definitions import LOCAL_TIME_PATTERN
from jobs.workflows import redrive_due_runs
from tests.conftest import REDIS_LOCK_KEY
from tests.factories import make_recipient, make_template

IN_APP_ONLY = {"en": {"in_app": {"title": "Hi {{ data.get('who', 'there') }}", "body": "b"}}}


def lose_every_job() -> None:
    """Empty this run's Redis database as a restart with nothing kept would -- all but the key that claims the
    database for this test run (a FLUSHDB would free it for another run to take and share)."""
    connection = get_redis()
    for name in list(connection.scan_iter(count=1000)):
        if name.decode() != REDIS_LOCK_KEY:
            connection.delete(name)


def save(api, key="flow", steps=None, name="A flow"):
    return api.put(f"/v1/workflows/{key}", json={"name": name, "steps": steps})


def trigger(api, user_id, key="flow", **fields):
    return api.post("/v1/notifications", json={"workflow": key, "user_id": user_id, **fields})


def run_of(response) -> SimpleNamespace:
    assert response.status_code == 202, response.json
    return SimpleNamespace(id=response.json["workflow_run_id"])


def drain(run_jobs, include_scheduled: bool = False) -> None:
    """Run the queued jobs, then the scheduler's pass and its jobs: a trigger whose job was not queued (Redis
    slow under load trips the outage guard) is re-driven from the database, as in production."""
    run_jobs(include_scheduled)
    redrive_due_runs()
    run_jobs()


def origins(run_id: int) -> list[str]:
    return sorted(
        db.session.scalars(select(Notification.origin).where(Notification.origin.like(f"workflow:{run_id}:%")))
    )


def test_every_save_is_a_version_and_get_list_delete_work(api):
    make_template("hello", IN_APP_ONLY)
    first = save(api, steps=[{"kind": "channel", "channel": "in_app", "template": "hello"}])
    assert first.status_code == 201 and first.json["version"] == 1
    second = save(
        api, steps=[{"kind": "delay", "seconds": 5}, {"kind": "channel", "channel": "in_app", "template": "hello"}]
    )
    assert second.status_code == 200 and second.json["version"] == 2 and len(second.json["steps"]) == 2
    assert api.get("/v1/workflows/flow").json["version"] == 2
    assert [w["key"] for w in api.get("/v1/workflows").json["items"]] == ["flow"]
    assert api.delete("/v1/workflows/flow").status_code == 204
    assert api.get("/v1/workflows/flow").status_code == 404


def test_bad_definitions_are_400_naming_step_index_and_field(api):
    make_template("hello", IN_APP_ONLY)
    cases = [
        ([{"kind": "channel", "channel": "fax", "template": "hello"}], "steps.0.channel"),
        ([{"kind": "channel", "channel": "sms", "template": "hello"}], "steps.0.channel"),
        ([{"kind": "channel", "channel": "in_app", "template": "nope"}], "steps.0.template"),
        ([{"kind": "delay", "seconds": 5, "until": "09:00"}], "steps.0.seconds"),
        ([{"kind": "delay", "until": "25:00"}], "steps.0.until"),
        ([{"kind": "teleport"}], "steps.0.kind"),
        (
            [
                {"kind": "condition", "step": 1, "outcome": "read"},
                {"kind": "channel", "channel": "in_app", "template": "hello"},
            ],
            "steps.0.step",
        ),
        ([{"kind": "delay", "seconds": 1}, {"kind": "condition", "step": 0, "outcome": "read"}], "steps.1.step"),
        ([{"kind": "condition", "data": {"field": "email", "op": "=", "value": "x"}}], "steps.0.data"),
        (
            [{"kind": "escalation", "template": "hello", "channels": [{"channel": "in_app"}, {"channel": "sms"}]}],
            "steps.0.channels.0.wait",
        ),
        (
            [
                {
                    "kind": "escalation",
                    "template": "hello",
                    "channels": [{"channel": "in_app", "wait": 5}, {"channel": "sms"}],
                }
            ],
            "steps.0.channels.1.channel",
        ),
        ([{"kind": "throttle", "limit": 0, "window": 60}], "steps.0.limit"),
    ]
    for steps, field in cases:
        response = save(api, steps=steps)
        assert response.status_code == 400, (steps, response.json)
        assert field in [f["field"] for f in response.json["error"]["fields"]], (steps, response.json)
    assert api.get("/v1/workflows/flow").status_code == 404


def test_the_openapi_document_states_the_step_rules(api):
    document = api.get("/v1/openapi.json").json
    schemas = document["components"]["schemas"]
    assert {"ChannelStep", "DelayStep", "ConditionStep", "EscalationStep", "ThrottleStep"} <= set(schemas)
    assert LOCAL_TIME_PATTERN in json.dumps(schemas["DelayStep"]) and "oneOf" in schemas["DelayStep"]
    assert "/v1/workflow-runs/{run_id}/cancel" in document["paths"]
    assert document["paths"]["/v1/workflows/{key}"]["put"]["security"] == [{"bearer": ["workflows:write"]}]


def test_trigger_is_idempotent_like_a_send_and_unknowns_are_404(api, run_jobs):
    make_template("hello", IN_APP_ONLY)
    save(api, steps=[{"kind": "channel", "channel": "in_app", "template": "hello"}])
    user = make_recipient()
    first = trigger(api, user.external_id, idempotency_key="k1", data={"who": "Ana"})
    again = trigger(api, user.external_id, idempotency_key="k1", data={"who": "Ana"})
    assert first.status_code == again.status_code == 202
    assert first.json["workflow_run_id"] == again.json["workflow_run_id"]
    assert trigger(api, user.external_id, idempotency_key="k1", data={"who": "Bo"}).status_code == 409
    assert trigger(api, user.external_id, key="missing").status_code == 404
    assert trigger(api, "nobody").status_code == 404
    drain(run_jobs)
    assert db.session.scalar(select(func.count()).select_from(WorkflowRun)) == 1
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


def test_channel_steps_send_through_the_pipeline_and_the_run_shows_what_each_sent(api, run_jobs):
    make_template("hello", IN_APP_ONLY)
    make_template("again", IN_APP_ONLY)
    save(
        api,
        steps=[
            {"kind": "channel", "channel": "in_app", "template": "hello"},
            {"kind": "channel", "channel": "in_app", "template": "again"},
        ],
    )
    user = make_recipient()
    recipient_id = user.id
    run = run_of(trigger(api, user.external_id, data={"who": "Ana"}))
    drain(run_jobs)
    view = api.get(f"/v1/workflow-runs/{run.id}").json
    assert view["status"] == "completed", view
    assert [s["state"] for s in view["steps"]] == ["done", "done"]
    assert [s["sent"][0]["status"] for s in view["steps"]] == [DELIVERED, DELIVERED]
    assert origins(run.id) == [f"workflow:{run.id}:0", f"workflow:{run.id}:1"]
    items, _ = inbox.inbox_page(recipient_id, 10, None, False)
    assert {n.title for n in items} == {"Hi Ana"}


def _wait_until_due(run_id: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        if db.session.get(WorkflowRun, run_id).next_at <= datetime.now(UTC):
            return
        time.sleep(0.1)


def test_a_delay_lives_in_the_database_and_the_scheduler_re_drives_it_after_redis_lost_every_job(api, run_jobs):
    make_template("hello", IN_APP_ONLY)
    save(api, steps=[{"kind": "delay", "seconds": 2}, {"kind": "channel", "channel": "in_app", "template": "hello"}])
    run = run_of(trigger(api, make_recipient().external_id))
    run_jobs()  # the queued job only: the delay begins
    db.session.expire_all()
    row = db.session.get(WorkflowRun, run.id)
    assert row.status == "running" and row.current_step == 0 and origins(run.id) == []
    lose_every_job()  # every queued and scheduled job is gone, as after a restart with nothing kept
    _wait_until_due(run.id)
    assert redrive_due_runs() == 1  # the scheduler's periodic job
    drain(run_jobs)
    db.session.expire_all()
    assert db.session.get(WorkflowRun, run.id).status == "completed"
    assert origins(run.id) == [f"workflow:{run.id}:1"]


def test_a_delay_until_a_local_time_waits_for_its_next_occurrence_in_the_recipients_zone(api, run_jobs):
    save(api, steps=[{"kind": "delay", "until": "09:00"}])
    user = make_recipient(timezone="Asia/Tokyo")
    run = run_of(trigger(api, user.external_id))
    drain(run_jobs)
    row = db.session.scalar(select(WorkflowStepRun).where(WorkflowStepRun.run_id == run.id))
    local = row.wait_until.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.hour, local.minute) == (9, 0)
    assert timedelta(0) < row.wait_until - datetime.now(UTC) <= timedelta(days=1)


def _read_condition_flow(api, negate=True):
    make_template("hello", IN_APP_ONLY)
    make_template("reminder", IN_APP_ONLY)
    save(
        api,
        steps=[
            {"kind": "channel", "channel": "in_app", "template": "hello"},
            {"kind": "condition", "step": 0, "outcome": "read", "within": 2, "negate": negate},
            {"kind": "channel", "channel": "in_app", "template": "reminder"},
        ],
    )


def test_condition_on_an_unread_step_waits_its_window_then_continues(api, run_jobs):
    _read_condition_flow(api)
    run = run_of(trigger(api, make_recipient().external_id))
    run_jobs()  # queued jobs only (a drain on a loaded machine may already reach the window's end)
    db.session.expire_all()
    assert db.session.get(WorkflowRun, run.id).status == "running"  # waiting for the window
    _wait_until_due(run.id)
    drain(run_jobs, include_scheduled=True)
    db.session.expire_all()
    assert db.session.get(WorkflowRun, run.id).status == "completed"
    assert len(origins(run.id)) == 2


def test_condition_on_a_read_step_stops_the_run_at_once(api, run_jobs):
    _read_condition_flow(api)
    user = make_recipient()
    run = run_of(trigger(api, user.external_id))
    from app.workflows.engine import advance

    # Take step 0 alone: the condition then finds it read.
    db.session.execute(WorkflowRun.__table__.update().values(next_at=datetime.now(UTC)))
    db.session.commit()
    drain(run_jobs)
    notification = db.session.scalar(select(Notification).where(Notification.origin == f"workflow:{run.id}:0"))
    if db.session.get(WorkflowRun, run.id).status == "running":
        inbox.mark_read(notification)
        _wait_until_due(run.id)
        advance(run.id)
    db.session.expire_all()
    final = db.session.get(WorkflowRun, run.id)
    assert final.status in ("stopped", "completed")
    # Read within the window: no reminder (the run stopped), or if it raced the read, it completed before it.
    if final.status == "stopped":
        assert final.reason == "condition" and len(origins(run.id)) == 1


def test_conditions_on_data_and_recipient_skip_or_stop(api, run_jobs):
    make_template("hello", IN_APP_ONLY)
    save(
        api,
        steps=[
            {"kind": "condition", "data": {"field": "data.amount", "op": ">", "value": 100}, "otherwise": "skip"},
            {"kind": "channel", "channel": "in_app", "template": "hello"},
            {"kind": "condition", "recipient": {"field": "attributes.plan", "op": "=", "value": "pro"}},
            {"kind": "channel", "channel": "in_app", "template": "hello"},
        ],
    )
    pro, free = make_recipient(attributes={"plan": "pro"}), make_recipient(attributes={"plan": "free"})
    big = run_of(trigger(api, pro.external_id, data={"amount": 500}))
    small = run_of(trigger(api, free.external_id, data={"amount": 5}))
    drain(run_jobs)
    db.session.expire_all()
    assert db.session.get(WorkflowRun, big.id).status == "completed"
    assert origins(big.id) == [f"workflow:{big.id}:1", f"workflow:{big.id}:3"]
    stopped = db.session.get(WorkflowRun, small.id)
    assert stopped.status == "stopped" and origins(small.id) == []
    steps = api.get(f"/v1/workflow-runs/{small.id}").json["steps"]
    assert [s["state"] for s in steps] == ["skipped", "pending", "stopped", "pending"]


def test_escalation_moves_on_when_a_channel_is_suppressed_and_stops_once_delivered(api, run_jobs):
    make_template("alert", {"en": {"sms": {"text": "Alert"}, "in_app": {"title": "Alert", "body": "b"}}})
    save(
        api,
        steps=[
            {
                "kind": "escalation",
                "template": "alert",
                "channels": [{"channel": "sms", "wait": 30}, {"channel": "in_app", "wait": 30}, {"channel": "sms"}],
            }
        ],
    )
    api.put(
        "/v1/workflows/flow",
        json={
            "name": "x",
            "steps": [
                {
                    "kind": "escalation",
                    "template": "alert",
                    "channels": [{"channel": "sms", "wait": 30}, {"channel": "in_app"}],
                }
            ],
        },
    )
    run = run_of(trigger(api, make_recipient(phone=None).external_id))  # no phone: SMS is suppressed at routing
    drain(run_jobs)
    view = api.get(f"/v1/workflow-runs/{run.id}").json
    assert view["status"] == "completed", view
    sent = view["steps"][0]["sent"]
    assert [(s["channel"], s["status"]) for s in sent] == [("sms", SUPPRESSED), ("in_app", DELIVERED)]
    assert view["steps"][0]["outcome"] == "delivered"


def test_escalation_moves_on_when_the_channel_is_not_read_in_time(api, run_jobs):
    make_template("alert", {"en": {"sms": {"text": "Alert"}, "in_app": {"title": "Alert", "body": "b"}}})
    save(
        api,
        steps=[
            {
                "kind": "escalation",
                "template": "alert",
                "until": "read",
                "channels": [{"channel": "in_app", "wait": 2}, {"channel": "sms"}],
            }
        ],
    )
    run = run_of(trigger(api, make_recipient(phone="+14155550100").external_id))
    run_jobs()  # the queued job only: the in-app send, then the wait for it to be read
    assert len(origins(run.id)) == 1
    _wait_until_due(run.id)
    redrive_due_runs()
    drain(run_jobs)
    view = api.get(f"/v1/workflow-runs/{run.id}").json
    assert [s["channel"] for s in view["steps"][0]["sent"]] == ["in_app", "sms"], view


def test_the_redrive_leaves_due_runs_to_a_queue_that_is_behind(api, run_jobs, monkeypatch):
    from app.workflows import engine

    make_template("hello", IN_APP_ONLY)
    save(api, steps=[{"kind": "channel", "channel": "in_app", "template": "hello"}])
    monkeypatch.setattr(engine, "REDRIVE_BATCH", 2)
    runs = [run_of(trigger(api, make_recipient().external_id)) for _ in range(2)]
    assert redrive_due_runs() == 0  # both are due, and both their jobs are still queued: none queued again
    lose_every_job()
    assert redrive_due_runs() == 2  # the queue is empty: the due runs are queued from the database
    run_jobs()
    db.session.expire_all()
    assert [db.session.get(WorkflowRun, r.id).status for r in runs] == ["completed", "completed"]


def test_throttle_lets_n_runs_per_window_through_and_stops_the_rest(api, run_jobs):
    make_template("hello", IN_APP_ONLY)
    save(
        api,
        steps=[
            {"kind": "throttle", "limit": 2, "window": 3600},
            {"kind": "channel", "channel": "in_app", "template": "hello"},
        ],
    )
    user, other = make_recipient(), make_recipient()
    runs = [run_of(trigger(api, user.external_id)) for _ in range(3)] + [run_of(trigger(api, other.external_id))]
    drain(run_jobs)
    db.session.expire_all()
    statuses = [db.session.get(WorkflowRun, r.id).status for r in runs]
    assert sorted(statuses[:3]) == ["completed", "completed", "stopped"] and statuses[3] == "completed"
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 3


def test_cancel_by_id_and_by_key_stops_waiting_runs(api, run_jobs):
    make_template("hello", IN_APP_ONLY)
    # A delay long enough that a loaded machine cannot let it run out before the cancels below.
    save(api, steps=[{"kind": "delay", "seconds": 3}, {"kind": "channel", "channel": "in_app", "template": "hello"}])
    user = make_recipient()
    one = run_of(trigger(api, user.external_id))
    two = run_of(trigger(api, user.external_id, cancellation_key="order-7"))
    three = run_of(trigger(api, user.external_id, cancellation_key="order-7"))
    drain(run_jobs)
    assert api.post(f"/v1/workflow-runs/{one.id}/cancel").json == {"cancelled": 1}
    assert api.post(f"/v1/workflow-runs/{one.id}/cancel").json == {"cancelled": 0}
    assert api.post("/v1/workflow-runs/cancel?key=order-7").json == {"cancelled": 2}
    assert api.post("/v1/workflow-runs/cancel").status_code == 400
    assert api.post("/v1/workflow-runs/999/cancel").status_code == 404
    time.sleep(3.1)
    redrive_due_runs()
    drain(run_jobs, include_scheduled=True)
    db.session.expire_all()
    assert {db.session.get(WorkflowRun, r.id).status for r in (one, two, three)} == {"cancelled"}
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0


def test_a_cancelled_runs_queued_delivery_is_suppressed_by_the_pipeline(api, run_jobs):
    make_template("hello", IN_APP_ONLY)
    save(api, steps=[{"kind": "channel", "channel": "in_app", "template": "hello"}, {"kind": "delay", "seconds": 60}])
    run = run_of(trigger(api, make_recipient().external_id, data={"who": "Ana"}))
    from app.workflows import engine, steps

    # Claim and store the step's notification without routing it, as a worker killed right after its claim would.
    original = steps.acts.route_if_unrouted
    steps.acts.route_if_unrouted = lambda notification_id: None
    try:
        engine.advance(run.id)
    finally:
        steps.acts.route_if_unrouted = original
    assert api.post(f"/v1/workflow-runs/{run.id}/cancel").json == {"cancelled": 1}
    notification_id = db.session.scalar(select(Notification.id).where(Notification.origin == f"workflow:{run.id}:0"))
    from app.pipeline.route import route_notification

    route_notification(notification_id)
    delivery = db.session.scalar(select(Delivery).where(Delivery.notification_id == notification_id))
    assert (delivery.status, delivery.reason) == (SUPPRESSED, "workflow_cancelled")
