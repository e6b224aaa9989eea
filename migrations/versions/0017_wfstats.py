"""workflow sends carry their workflow and step (analytics by workflow and step); digest frequency per category

Existing workflow notifications are backfilled from their origin (``workflow:<run>:<step>``), once, here.

Revision ID: 0017_wfstats
Revises: 0016_broadcasts
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_wfstats"
down_revision = "0016_broadcasts"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WORKFLOW_SENDS = sa.text("workflow_id IS NOT NULL")

BACKFILL_POSTGRESQL = """
UPDATE notifications SET workflow_id = workflow_runs.workflow_id,
    workflow_step = CAST(split_part(notifications.origin, ':', 3) AS INTEGER)
FROM workflow_runs
WHERE notifications.origin LIKE 'workflow:%'
  AND workflow_runs.id = CAST(split_part(notifications.origin, ':', 2) AS BIGINT)
"""
# substr(origin, 10) is "<run>:<step>"
BACKFILL_SQLITE = """
UPDATE notifications SET
    workflow_step = CAST(substr(substr(origin, 10), instr(substr(origin, 10), ':') + 1) AS INTEGER),
    workflow_id = (SELECT workflow_runs.workflow_id FROM workflow_runs WHERE workflow_runs.id =
        CAST(substr(substr(origin, 10), 1, instr(substr(origin, 10), ':') - 1) AS INTEGER))
WHERE origin LIKE 'workflow:%'
"""


def upgrade():
    op.add_column("notifications", sa.Column("workflow_id", BigId, nullable=True))
    op.add_column("notifications", sa.Column("workflow_step", sa.Integer(), nullable=True))
    op.execute(BACKFILL_POSTGRESQL if op.get_bind().dialect.name == "postgresql" else BACKFILL_SQLITE)
    op.create_index(
        "ix_notifications_workflow",
        "notifications",
        ["workflow_id", "created_at"],
        sqlite_where=WORKFLOW_SENDS,
        postgresql_where=WORKFLOW_SENDS,
    )
    op.create_table(
        "digest_preferences",
        sa.Column("recipient_id", BigId, sa.ForeignKey("recipients.id", ondelete="CASCADE"), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("frequency", sa.String(length=8), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("recipient_id", "category"),
    )


def downgrade():
    op.drop_table("digest_preferences")
    op.drop_index("ix_notifications_workflow", table_name="notifications")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("workflow_step")
        batch_op.drop_column("workflow_id")
