"""Workflow benchmarks (issue 15), each figure beside its floor measured in the same run.

- One-step workflow against a plain send, in this process (what a workflow costs per notification).
- Digest: triggers for a 1-minute digest (``window``) spread over recipients, advanced by two real
  ``flask worker`` processes, the scheduler's re-drive called as ``flask scheduler`` calls it (every 5 s):
  digests produced, every trigger in exactly one; steps/s while the triggers are taken in; time from each
  window's end to its digest's in-app send. Floor: the same triggers ``COPY``'d into a bare table (intake), and
  the same digests grouped by one query, stored as plain notifications and routed by the same workers as API
  sends (from the moment they are queued to the last sent).
- Escalation: runs whose first channel (SMS) fails for real -- a Twilio-shaped peer in its own process answers
  every message with a permanent error -- and whose second is in-app: time from the SMS delivery's failure to
  the in-app send. Floor: the same number of plain in-app sends, each queued at the same offset from the start
  as one of the failures, through the same workers: time from queued to sent.

``make test`` runs smoke sizes; ``make bench`` (marker ``bench``) the issue's sizes: 100,000 triggers over
10,000 recipients and 10,000 escalations (``HERALD_BENCH_DIGEST_TRIGGERS``, ``HERALD_BENCH_ESCALATIONS``).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from datetime import datetime
from multiprocessing import Process
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, text

from app.accept import accept_notification, notification_row
from app.extensions import db
from app.models import Delivery, Notification, Recipient, Workflow, WorkflowDigest, WorkflowRun, WorkflowStepRun
from app.models.bulk import insert_returning
from app.models.types import utcnow
from app.models.workflows import RUNNING
from app.pipeline.route import route_notification
from app.schemas import NotificationCreate
from app.tasks import enqueue_all
from app.workflows.definitions import WorkflowSave
from app.workflows.engine import ADVANCE_JOB, advance
from app.workflows.schemas import WorkflowTrigger
from app.workflows.store import save_workflow
from app.workflows.trigger import _run_row, trigger_workflow
from jobs.workflows import redrive_due_runs
from tests.bench.harness import machine, percentile, workers
from tests.conftest import free_port, wait_for_port
from tests.factories import make_recipient, make_template

ROUNDS, PER_ROUND = 4, 100
REDRIVE_EVERY = 5.0  # jobs/scheduler.py: the "workflows" job's interval
ROUTE_JOB = "jobs.delivery.route_notification"
SMS_ACCOUNT, SMS_TOKEN = "AC" + "b" * 32, "bench-token"
SMS_REFUSAL = (400, {"code": 21408, "message": "Permission to send an SMS has not been enabled", "status": 400})


@pytest.mark.bench
def test_a_one_step_workflow_against_a_plain_send(app):
    make_template("hello", {"en": {"in_app": {"title": "Hello", "body": "b"}}})
    steps = [{"kind": "channel", "channel": "in_app", "template": "hello"}]
    save_workflow("one", WorkflowSave.model_validate({"name": "One", "steps": steps}))
    users = [make_recipient().external_id for _ in range(PER_ROUND)]
    workflow_times, send_times = [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for user in users:
            advance(trigger_workflow(WorkflowTrigger(workflow="one", user_id=user), None, None).workflow_run_id)
        workflow_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        for user in users:
            payload = NotificationCreate(user_id=user, type="transactional", template="hello", channels=["in_app"])
            route_notification(accept_notification(payload, None, None).id)
        send_times.append(time.perf_counter() - started)
    workflow_rate = PER_ROUND / min(workflow_times)
    send_rate = PER_ROUND / min(send_times)
    print(
        f"one-step workflow {workflow_rate:.0f}/s, plain send (floor) {send_rate:.0f}/s, "
        f"ratio {workflow_rate / send_rate:.2f} (best of {ROUNDS} alternating rounds of {PER_ROUND})"
    )
    assert workflow_rate > 0


# -- shared pieces -----------------------------------------------------------------------------


def seed_recipients(count: int, prefix: str) -> list[int]:
    """``count`` recipients with a phone, in one INSERT ... SELECT over a generated series; their ids."""
    if db.engine.dialect.name == "postgresql":
        series, now = "SELECT g AS n FROM generate_series(1, :count) AS g", "now()"
    else:
        series = (
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :count) SELECT n FROM seq"
        )
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    db.session.execute(
        text(
            "INSERT INTO recipients (external_id, email, phone, timezone, locale, attributes, hard_stop, created_at, "
            f"updated_at) SELECT '{prefix}-' || n, '{prefix}' || n || '@example.com', '+1415' || (5000000 + n), "
            f"'Europe/Lisbon', "
            f"'en', '{{}}', false, {now}, {now} FROM ({series}) AS s"
        ),
        {"count": count},
    )
    db.session.commit()
    return db.session.scalars(
        select(Recipient.id).where(Recipient.external_id.like(f"{prefix}-%")).order_by(Recipient.id)
    ).all()


def save(key: str, steps: list[dict]) -> None:
    save_workflow(key, WorkflowSave.model_validate({"name": key, "steps": steps}))
    db.session.commit()


def start_runs(key: str, triggers: list[tuple[int, dict]], batch: int = 5000) -> datetime:
    """The triggers' runs written as ``trigger_workflow`` writes them and their advance jobs queued as it queues
    them, by batches (no HTTP: the accept path has its own benchmark). Returns when the first was written."""
    found = db.session.execute(
        text(
            "SELECT w.id, v.id FROM workflows w JOIN workflow_versions v ON v.workflow_id = w.id "
            "AND v.version = w.current_version WHERE w.key = :key"
        ),
        {"key": key},
    ).first()
    started = utcnow()
    for start in range(0, len(triggers), batch):
        now = utcnow()
        rows = [
            _run_row(*found, recipient, SimpleNamespace(data=data, cancellation_key=None), None, None, now)
            for recipient, data in triggers[start : start + batch]
        ]
        ids = [r.id for r in insert_returning(WorkflowRun, rows, ["id"], [WorkflowRun.id])]
        db.session.commit()
        enqueue_all(ADVANCE_JOB, [((run_id,), now) for run_id in ids], "normal")
    return started


def wait_for_runs(timeout_s: float) -> int:
    """Poll until no run is running, calling the scheduler's re-drive every 5 s as ``flask scheduler`` does."""
    deadline, next_redrive = time.monotonic() + timeout_s, time.monotonic() + REDRIVE_EVERY
    while True:
        db.session.remove()
        running = db.session.scalar(select(func.count()).select_from(WorkflowRun).where(WorkflowRun.status == RUNNING))
        if not running or time.monotonic() > deadline:
            return running
        if time.monotonic() >= next_redrive:
            redrive_due_runs()
            next_redrive += REDRIVE_EVERY
        time.sleep(0.2)


def queue_plain_sends(rows: list[dict]) -> None:
    """Plain in-app notifications stored in one go and routed by the workers, one route job each (an API send)."""
    insert_returning(Notification, rows, ["id"], [Notification.id])
    db.session.commit()
    enqueue_all(ROUTE_JOB, [((row["id"],), row["created_at"]) for row in rows], rows[0]["priority"])


def plain_row(recipient_id: int, data: dict, now: datetime) -> dict:
    payload = NotificationCreate.model_construct(
        user_id="",
        type="transactional",
        category="general",
        template=None,
        title="You have news",
        body="b",
        data=data,
        channels=["in_app"],
        priority="normal",
        collapse_key=None,
        send_at=None,
    )
    return notification_row(payload, recipient_id, None, None, None, now)


def sent_times(notification_ids: list[str]) -> dict[str, datetime]:
    """When each notification's in-app delivery was recorded delivered."""
    found = {}
    for start in range(0, len(notification_ids), 5000):
        part = notification_ids[start : start + 5000]
        found.update(
            db.session.execute(
                select(Delivery.notification_id, Delivery.delivered_at).where(
                    Delivery.notification_id.in_(part), Delivery.channel == "in_app", Delivery.status == "DELIVERED"
                )
            ).all()
        )
    return found


def wait_sent(notification_ids: list[str], timeout_s: float) -> dict[str, datetime]:
    deadline = time.monotonic() + timeout_s
    while True:
        db.session.remove()
        sent = sent_times(notification_ids)
        if len(sent) >= len(notification_ids) or time.monotonic() > deadline:
            return sent
        time.sleep(0.2)


def ms(values: list[float]) -> str:
    if not values:
        return "no samples"
    return f"p50 {percentile(values, 50) * 1000:.0f} ms, p99 {percentile(values, 99) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


def load_average() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


# -- the processes: a Twilio-shaped peer that refuses every SMS, two workers -------------------


def run_refusing_sms_peer(port: int) -> None:
    from tests.peers.twilio import TwilioApi

    peer = TwilioApi({SMS_ACCOUNT: SMS_TOKEN}, port=port)
    peer.fail_account[SMS_ACCOUNT] = SMS_REFUSAL
    peer.server.serve_forever()


@contextmanager
def bench_processes(bench_env: dict, poll_seconds: int | None):
    """The peer in its own process and two ``flask worker`` processes on every queue, pointed at it."""
    port = free_port()
    peer = Process(target=run_refusing_sms_peer, args=(port,), daemon=True)
    peer.start()
    wait_for_port(port)
    env = {
        **bench_env,
        "TWILIO_ACCOUNT_SID": SMS_ACCOUNT,
        "TWILIO_AUTH_TOKEN": SMS_TOKEN,
        "TWILIO_FROM": "+15005550006",
        "TWILIO_API_BASE": f"http://127.0.0.1:{port}",
        "HERALD_SMS_RATE": "0",
        "HERALD_CHANNEL_SLOTS": "2",  # as the campaign benchmark: both workers may send SMS at once
    }
    if poll_seconds is not None:
        env["HERALD_WORKFLOW_POLL_SECONDS"] = str(poll_seconds)
    try:
        with workers(env, [["critical", "high", "normal", "low"]] * 2):
            yield
    finally:
        peer.terminate()
        peer.join(5)


def origin_run(origin: str) -> int:
    return int(origin.split(":")[1])


# -- digest ------------------------------------------------------------------------------------


def copy_events(triggers: list[tuple[int, dict]]) -> float:
    """Intake floor: the same triggers written to a bare table (COPY on PostgreSQL); seconds."""
    db.session.execute(text("CREATE TABLE bench_events (recipient_id BIGINT, actor VARCHAR(64))"))
    db.session.commit()
    started = time.perf_counter()
    if db.engine.dialect.name == "postgresql":
        connection = db.session.connection().connection.driver_connection
        with connection.cursor() as cursor, cursor.copy("COPY bench_events (recipient_id, actor) FROM STDIN") as copy:
            for recipient, data in triggers:
                copy.write_row((recipient, data["actor"]))
    else:
        db.session.execute(
            text("INSERT INTO bench_events VALUES (:r, :a)"), [{"r": r, "a": d["actor"]} for r, d in triggers]
        )
    db.session.commit()
    return time.perf_counter() - started


def digest_floor(triggers: list[tuple[int, dict]], timeout_s: float) -> dict:
    """Intake: COPY. Firing: one GROUP BY makes each recipient's digest, stored as plain notifications and routed
    by the same workers as API sends; per digest, queued -> sent."""
    intake = copy_events(triggers)
    groups = db.session.execute(
        text("SELECT recipient_id, count(*), min(actor) FROM bench_events GROUP BY recipient_id")
    ).all()
    now = utcnow()
    rows = [plain_row(recipient, {"count": count, "actors": [actor]}, now) for recipient, count, actor in groups]
    queue_plain_sends(rows)
    sent = wait_sent([row["id"] for row in rows], timeout_s)
    db.session.execute(text("DROP TABLE bench_events"))
    db.session.commit()
    latencies = [(at - now).total_seconds() for at in sent.values()]
    return {
        "intake_s": intake,
        "digests": len(rows),
        "sent": len(sent),
        "last_s": max(latencies),
        "latencies": latencies,
    }


def digest_benchmark(triggers: int, recipients: int, window: int, timeout_s: float) -> dict:
    """With :func:`bench_processes` running."""
    backend = db.engine.dialect.name
    ids = seed_recipients(recipients, "digest")
    make_template("digest", {"en": {"in_app": {"title": "{{ data.count }} new comments", "body": "b"}}})
    save(
        "comments",
        [{"kind": "digest", "window": window}, {"kind": "channel", "channel": "in_app", "template": "digest"}],
    )
    # Each recipient's triggers one after the other (comments on one post arrive together). Interleaved, the engine
    # takes them in more slowly than a window lasts, so each digest would hold one trigger.
    per = triggers // recipients
    work = [(ids[n // per], {"actor": f"a{n}"}) for n in range(triggers)]
    load_before = load_average()
    written = time.perf_counter()
    start_runs("comments", work)
    written = time.perf_counter() - written
    left = wait_for_runs(timeout_s)
    db.session.remove()
    floor = digest_floor(work, timeout_s)
    digests = db.session.execute(
        select(WorkflowDigest.owner_run_id, WorkflowDigest.closes_at, WorkflowDigest.count)
    ).all()
    members = sum(d.count for d in digests)
    claimed, first_claim, last_claim = db.session.execute(
        select(func.count(), func.min(WorkflowStepRun.started_at), func.max(WorkflowStepRun.started_at)).where(
            WorkflowStepRun.kind == "digest"
        )
    ).one()
    notes = dict(
        db.session.execute(
            select(Notification.origin, Notification.id).where(Notification.origin.like("workflow:%:1"))
        ).all()
    )
    sent = sent_times(list(notes.values()))
    latencies, last_end, last_sent = [], None, None
    for owner, closes_at, _ in digests:
        at = sent.get(notes.get(f"workflow:{owner}:1"))
        if at is not None:
            latencies.append((at - closes_at).total_seconds())
            last_end = max(last_end or closes_at, closes_at)
            last_sent = max(last_sent or at, at)
    if not latencies:  # nothing was taken in or sent before the timeout (a machine too busy): say so, plainly
        print(f"\n[bench] digest on {backend}: {claimed} of {triggers} triggers taken, no digest sent, {left} running")
        return {"digests": len(digests), "members": members, "claimed": claimed, "sent": 0, "left": left}
    intake_s = max((last_claim - first_claim).total_seconds(), 1e-3)
    firing_s = (last_sent - min(d.closes_at for d in digests)).total_seconds()
    last_s = (last_sent - last_end).total_seconds()
    intake_rate, floor_intake = claimed / intake_s, triggers / floor["intake_s"]
    print(
        f"\n[bench] digest on {backend}: {triggers} triggers over {recipients} recipients ({per} in a row each) into a "
        f"{window} s digest, 2 workers + re-drive every {REDRIVE_EVERY:.0f} s: {len(digests)} digests produced "
        f"holding {members} triggers, {len(sent)} sent, {left} runs still running; runs written and their jobs "
        f"queued in {written:.1f} s\n"
        f"[bench]   intake: {claimed} digest steps taken in {intake_s:.1f} s = {intake_rate:.0f} steps/s; floor (COPY "
        f"of the same triggers into a bare table) {floor_intake:.0f}/s; ratio {intake_rate / floor_intake:.4f}\n"
        f"[bench]   firing: last window end -> last digest sent {last_s:.1f} s; per digest, window end -> sent "
        f"{ms(latencies)}; {len(sent)} digests from the first window end in {firing_s:.1f} s = "
        f"{len(sent) / firing_s:.0f} digests/s ({2 * len(sent) / firing_s:.0f} steps/s)\n"
        f"[bench]   floor: one GROUP BY -> {floor['digests']} plain in-app notifications routed by the same workers "
        f"as API sends: queued -> last sent {floor['last_s']:.1f} s ({floor['digests'] / floor['last_s']:.0f}/s), "
        f"per send {ms(floor['latencies'])}; ratio last digest / last plain send {last_s / floor['last_s']:.1f}\n"
        f"[bench]   {load_before} before, {load_average()} after ({machine()})"
    )
    return {"digests": len(digests), "members": members, "claimed": claimed, "sent": len(sent), "left": left}


# -- escalation --------------------------------------------------------------------------------


def escalation_rows(run_ids: set[int]) -> dict[int, dict]:
    """Per run: (status, when) of its SMS delivery (when it failed) and of its in-app one (when it was sent)."""
    found: dict[int, dict] = {}
    for origin, channel, status, updated_at, delivered_at in db.session.execute(
        select(Notification.origin, Delivery.channel, Delivery.status, Delivery.updated_at, Delivery.delivered_at)
        .join(Delivery, Delivery.notification_id == Notification.id)
        .where(Notification.origin.like("workflow:%"))
    ):
        if origin_run(origin) in run_ids:
            found.setdefault(origin_run(origin), {})[channel] = (
                status,
                delivered_at if channel == "in_app" else updated_at,
            )
    return found


def paced_plain_sends(recipients: list[int], offsets: list[float], timeout_s: float) -> list[float]:
    """Floor: a plain in-app send queued at each offset (seconds from now); queued -> sent per send."""
    rows, origin = [], time.monotonic()
    pending = sorted(zip(offsets, recipients, strict=True))
    while pending:
        due = time.monotonic() - origin
        now = utcnow()
        batch = [plain_row(r, {}, now) for offset, r in pending if offset <= due]
        pending = [(offset, r) for offset, r in pending if offset > due]
        if batch:
            queue_plain_sends(batch)
            rows += batch
        elif pending:
            time.sleep(min(0.01, pending[0][0] - due))
    sent = wait_sent([row["id"] for row in rows], timeout_s)
    return [(sent[row["id"]] - row["created_at"]).total_seconds() for row in rows if row["id"] in sent]


def escalation_benchmark(runs: int, poll_seconds: int, timeout_s: float) -> dict:
    """With :func:`bench_processes` running (its workers' ``HERALD_WORKFLOW_POLL_SECONDS`` is ``poll_seconds``)."""
    backend = db.engine.dialect.name
    ids = seed_recipients(runs, "alert")
    make_template("alert", {"en": {"sms": {"text": "Alert"}, "in_app": {"title": "Alert", "body": "b"}}})
    escalation = {"channels": [{"channel": "sms", "wait": 300}, {"channel": "in_app"}], "template": "alert"}
    save("alert", [{"kind": "escalation", **escalation}])
    load_before = load_average()
    start_runs("alert", [(r, {}) for r in ids])
    left = wait_for_runs(timeout_s)
    db.session.remove()
    run_ids = set(
        db.session.scalars(
            select(WorkflowRun.id).join(Workflow, Workflow.id == WorkflowRun.workflow_id).where(Workflow.key == "alert")
        )
    )
    found = escalation_rows(run_ids)
    failures = sorted(run["sms"][1] for run in found.values() if run.get("sms", ("",))[0] == "FAILED")
    if not failures:  # nothing got as far before the timeout (a machine too busy): say so, plainly
        print(f"\n[bench] escalation on {backend}: no SMS failed of {runs} runs, {left} running")
        return {"failed": 0, "escalated": 0, "notifications": 0, "left": left}
    floor = paced_plain_sends(ids[: len(failures)], [(at - failures[0]).total_seconds() for at in failures], timeout_s)
    latencies = [
        (run["in_app"][1] - run["sms"][1]).total_seconds()
        for run in found.values()
        if run.get("sms", ("",))[0] == "FAILED" and run.get("in_app", ("",))[0] == "DELIVERED"
    ]
    notifications = sum(len(run) for run in found.values())
    p99, floor_p99 = percentile(latencies, 99), percentile(floor, 99)
    print(
        f"\n[bench] escalation on {backend}: {runs} runs, SMS refused by a Twilio-shaped peer in its own process "
        f"(400, code 21408) -> in-app, 2 workers + re-drive every {REDRIVE_EVERY:.0f} s, "
        f"HERALD_WORKFLOW_POLL_SECONDS {poll_seconds}: {len(failures)} SMS failed, {len(latencies)} escalated and sent "
        f"in-app, {notifications} notifications, {left} runs still running\n"
        f"[bench]   SMS failure -> in-app sent: {ms(latencies)}\n"
        f"[bench]   floor: {len(floor)} plain in-app sends queued at the failures' offsets, same workers, "
        f"queued -> sent: {ms(floor)}; ratio of the p99s {p99 / floor_p99:.0f}\n"
        f"[bench]   {load_before} before, {load_average()} after ({machine()})"
    )
    return {"failed": len(failures), "escalated": len(latencies), "notifications": notifications, "left": left}


# -- the tests ---------------------------------------------------------------------------------


def test_digest_and_escalation_smoke(bench_env):
    """Both benchmarks at smoke size on one set of processes (starting workers is most of a smoke run)."""
    with bench_processes(bench_env, poll_seconds=1):
        digest = digest_benchmark(triggers=200, recipients=20, window=1, timeout_s=60)
        escalation = escalation_benchmark(runs=20, poll_seconds=1, timeout_s=60)
    assert digest["left"] == 0 and digest["members"] == digest["claimed"] == 200
    assert digest["sent"] == digest["digests"] >= 20
    assert escalation["left"] == 0 and escalation["failed"] == escalation["escalated"] == 20
    assert escalation["notifications"] == 40


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_digest_full(bench_env):
    triggers = int(os.environ.get("HERALD_BENCH_DIGEST_TRIGGERS", "100000"))
    with bench_processes(bench_env, poll_seconds=None):
        result = digest_benchmark(triggers=triggers, recipients=triggers // 10, window=60, timeout_s=1800)
    assert result["members"] == result["claimed"] == triggers


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_escalation_full(bench_env):
    """At the production default of ``HERALD_WORKFLOW_POLL_SECONDS`` (10)."""
    runs = int(os.environ.get("HERALD_BENCH_ESCALATIONS", "10000"))
    with bench_processes(bench_env, poll_seconds=None):
        result = escalation_benchmark(runs=runs, poll_seconds=10, timeout_s=1800)
    assert result["escalated"] == result["failed"] == runs
