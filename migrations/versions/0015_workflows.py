"""workflows: versions, runs, step executions (the (run, step) claim), throttle slots; keys may name a run

Revision ID: 0015_workflows
Revises: 0014_topics
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015_workflows"
down_revision = "0014_topics"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
When = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "workflows",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.UniqueConstraint("key"),
    )
    op.create_table(
        "workflow_versions",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("workflow_id", BigId, sa.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("steps", Json, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.UniqueConstraint("workflow_id", "version"),
    )
    op.create_table(
        "workflow_runs",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("workflow_id", BigId, sa.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version_id", BigId, sa.ForeignKey("workflow_versions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("recipient_id", BigId, sa.ForeignKey("recipients.id", ondelete="CASCADE"), nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("api_key_id", BigId, sa.ForeignKey("api_keys.id", ondelete="SET NULL"), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("cancellation_key", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("current_step", sa.Integer(), nullable=False),
        sa.Column("next_at", When, nullable=True),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.Column("finished_at", When, nullable=True),
    )
    op.create_index("ix_workflow_runs_due", "workflow_runs", ["status", "next_at"])
    op.create_index("ix_workflow_runs_cancellation", "workflow_runs", ["cancellation_key"])
    op.create_index("ix_workflow_runs_workflow", "workflow_runs", ["workflow_id", "created_at"])
    op.create_index("ix_workflow_runs_recipient_id", "workflow_runs", ["recipient_id"])
    op.create_table(
        "workflow_digests",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("workflow_id", BigId, sa.ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
        sa.Column("recipient_id", BigId, sa.ForeignKey("recipients.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("digest_key", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("owner_run_id", BigId, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("max_events", sa.Integer(), nullable=True),
        sa.Column("opened_at", When, nullable=False),
        sa.Column("closes_at", When, nullable=False),
        sa.Column("closed_at", When, nullable=True),
    )
    op.create_index(
        "ux_workflow_digests_open",
        "workflow_digests",
        ["workflow_id", "recipient_id", "step_index", "digest_key"],
        unique=True,
        sqlite_where=sa.text("state = 'open'"),
        postgresql_where=sa.text("state = 'open'"),
    )
    op.create_table(
        "workflow_step_runs",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("run_id", BigId, sa.ForeignKey("workflow_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("sent", Json, nullable=False),
        sa.Column("wait_until", When, nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("digest_id", BigId, sa.ForeignKey("workflow_digests.id", ondelete="SET NULL"), nullable=True),
        sa.Column("started_at", When, nullable=False),
        sa.Column("finished_at", When, nullable=True),
        sa.UniqueConstraint("run_id", "step_index"),
    )
    op.create_index("ix_workflow_step_runs_digest_id", "workflow_step_runs", ["digest_id"])
    op.create_table(
        "workflow_throttle_slots",
        sa.Column("workflow_id", BigId, sa.ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("recipient_id", BigId, sa.ForeignKey("recipients.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("slot", sa.Integer(), primary_key=True),
        sa.Column("run_id", BigId, nullable=True),
        sa.Column("taken_at", When, nullable=False),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workflow_run_id", BigId, nullable=True))
        batch_op.create_foreign_key(
            "fk_idempotency_keys_workflow_run_id", "workflow_runs", ["workflow_run_id"], ["id"], ondelete="CASCADE"
        )
    # Keys that could send anything may define workflows (scope names as of this revision, written out).
    keys = sa.table("api_keys", sa.column("id", BigId), sa.column("scopes", sa.String(255)))
    connection = op.get_bind()
    for key_id, scopes in connection.execute(sa.select(keys.c.id, keys.c.scopes)).all():
        held = scopes.split()
        if "notifications:send" in held:
            added = [s for s in ("workflows:read", "workflows:write") if s not in held]
            connection.execute(keys.update().where(keys.c.id == key_id).values(scopes=" ".join(held + added)))


def downgrade():
    op.execute("DELETE FROM idempotency_keys WHERE workflow_run_id IS NOT NULL")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_constraint("fk_idempotency_keys_workflow_run_id", type_="foreignkey")
        batch_op.drop_column("workflow_run_id")
    op.drop_table("workflow_throttle_slots")
    op.drop_index("ix_workflow_step_runs_digest_id", table_name="workflow_step_runs")
    op.drop_table("workflow_step_runs")
    op.drop_index("ux_workflow_digests_open", table_name="workflow_digests")
    op.drop_table("workflow_digests")
    op.drop_index("ix_workflow_runs_recipient_id", table_name="workflow_runs")
    op.drop_index("ix_workflow_runs_workflow", table_name="workflow_runs")
    op.drop_index("ix_workflow_runs_cancellation", table_name="workflow_runs")
    op.drop_index("ix_workflow_runs_due", table_name="workflow_runs")
    op.drop_table("workflow_runs")
    op.drop_table("workflow_versions")
    op.drop_table("workflows")
