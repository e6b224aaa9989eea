"""Sends broken down by workflow and step: the analytics report and page, the workflow page's per-step counts,
/metrics, and the migration's backfill of the columns they group by."""

from __future__ import annotations

import importlib.util

from sqlalchemy import select, text, update

from app import analytics
from app.extensions import db
from app.models import Notification, Workflow
from app.models.types import utcnow
from app.workflows import store
from app.workflows.stats import StepSends
from tests.conftest import PROJECT_ROOT
from tests.factories import make_recipient, make_template
from tests.integration.test_analytics import samples
from tests.integration.test_analytics import sign_in as staff_sign_in
from tests.integration.test_workflows import drain, save, trigger


def two_steps_for_two_users(api, run_jobs) -> None:
    """Step 0 in-app (delivered), step 1 SMS to users without a phone (suppressed); one of the in-app ones read and
    clicked; plus a plain API send, which is no workflow's."""
    make_template("hello")
    response = save(
        api,
        steps=[
            {"kind": "channel", "channel": "in_app", "template": "hello"},
            {"kind": "channel", "channel": "sms", "template": "hello"},
        ],
    )
    assert response.status_code == 201, response.json
    for recipient in (make_recipient(), make_recipient()):
        trigger(api, recipient.external_id)
    api.post("/v1/notifications", json={"user_id": recipient.external_id, "template": "hello", "channels": ["in_app"]})
    drain(run_jobs)
    first = db.session.scalars(select(Notification.id).where(Notification.workflow_step == 0)).first()
    db.session.execute(
        update(Notification).where(Notification.id == first).values(read_at=utcnow(), clicked_at=utcnow())
    )
    db.session.commit()


def test_analytics_break_workflow_sends_down_by_workflow_and_step(api, run_jobs, client):
    two_steps_for_two_users(api, run_jobs)
    (flow,) = analytics.report(analytics.resolve_period("24h")).workflows
    assert flow.steps == [
        StepSends("flow", 0, notifications=2, sent=2, delivered=2, read=1, clicked=1),
        StepSends("flow", 1, notifications=2, suppressed=2),
    ]
    assert flow.total == StepSends("flow", None, notifications=4, sent=2, delivered=2, read=1, clicked=1, suppressed=2)
    assert analytics.report(analytics.resolve_period("24h"), campaign=1).workflows == []
    staff_sign_in(client, "marketer")
    html = client.get("/console/analytics?period=24h").get_data(as_text=True)
    row = html.split('data-workflow="flow" data-step="1"')[1].split("</tr>")[0]
    assert 'data-testid="notifications">2<' in row and 'data-testid="suppressed">2<' in row
    assert 'data-testid="read">1<' in html.split('data-workflow="flow" data-step="all"')[1].split("</tr>")[0]


def test_the_workflow_page_counts_per_step_in_sql(api, run_jobs, client):
    two_steps_for_two_users(api, run_jobs)
    workflow = db.session.scalar(select(Workflow))
    assert store.step_counts(workflow.id) == {
        0: {"entered": 2, "done": 2, "sent": 2},
        1: {"entered": 2, "done": 2, "sent": 2},
    }
    staff_sign_in(client, "marketer")
    html = client.get("/console/workflows/flow").get_data(as_text=True)
    assert 'data-testid="sent">2<' in html.split('data-step="1"')[1].split("</tr>")[0]


def test_metrics_export_runs_step_executions_and_deliveries_by_workflow_and_step(api, run_jobs, client):
    two_steps_for_two_users(api, run_jobs)
    values = samples(client.get("/metrics").get_data(as_text=True))
    assert values[("herald_workflow_runs", (("status", "completed"), ("workflow", "flow")))] == 2
    executions = (("outcome", "sent"), ("state", "done"), ("step", "1"), ("workflow", "flow"))
    assert values[("herald_workflow_step_executions", executions)] == 2
    assert values[("herald_workflow_deliveries", (("status", "SUPPRESSED"), ("step", "1"), ("workflow", "flow")))] == 2
    assert values[("herald_workflow_deliveries", (("status", "DELIVERED"), ("step", "0"), ("workflow", "flow")))] == 2
    labels = {name for (metric, pairs) in values if metric.startswith("herald_workflow") for name, _ in pairs}
    assert labels == {"workflow", "step", "status", "state", "outcome"}  # never a run id


def test_the_migration_backfills_workflow_and_step_from_the_origin(api, run_jobs):
    two_steps_for_two_users(api, run_jobs)
    stamped = sorted(
        db.session.execute(select(Notification.origin, Notification.workflow_id, Notification.workflow_step))
    )
    db.session.execute(update(Notification).values(workflow_id=None, workflow_step=None))
    spec = importlib.util.spec_from_file_location("m", PROJECT_ROOT / "migrations/versions/0017_wfstats.py")
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    dialect = db.session.get_bind().dialect.name
    db.session.execute(text(migration.BACKFILL_POSTGRESQL if dialect == "postgresql" else migration.BACKFILL_SQLITE))
    db.session.commit()
    again = sorted(
        db.session.execute(select(Notification.origin, Notification.workflow_id, Notification.workflow_step))
    )
    assert again == stamped and sum(1 for _origin, workflow, _step in again if workflow) == 4
