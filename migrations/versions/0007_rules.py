"""daily rules and their sent log (the dedup gate)

Revision ID: 0007
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade():
    op.create_table(
        "rules",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("audience", JSON, nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("template_key", sa.String(length=128), nullable=False),
        sa.Column("channels", JSON, nullable=False),
        sa.Column("window_start", sa.Time(), nullable=False),
        sa.Column("window_end", sa.Time(), nullable=False),
        sa.Column("every_days", sa.Integer(), nullable=False),
        sa.Column("no_timezone_policy", sa.String(length=16), nullable=False),
        sa.Column("last_evaluated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_rules_name")),
    )
    op.create_table(
        "rule_sends",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("rule_id", BIG_ID, nullable=False),
        sa.Column("recipient_id", BIG_ID, nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("timezone", sa.String(length=72), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("notification_id", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["recipient_id"], ["recipients.id"], name=op.f("fk_rule_sends_recipient_id_recipients"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"], ["rules.id"], name=op.f("fk_rule_sends_rule_id_rules"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_sends")),
        # The dedup gate: one claim per recipient, rule and local day (or period start).
        sa.UniqueConstraint(
            "recipient_id", "rule_id", "local_date", name=op.f("uq_rule_sends_recipient_id_rule_id_local_date")
        ),
    )
    with op.batch_alter_table("rule_sends", schema=None) as batch_op:
        # Re-drive finds a rule's pending claims without scanning its whole history.
        batch_op.create_index("ix_rule_sends_rule_status", ["rule_id", "status", "id"], unique=False)
        batch_op.create_index("ix_rule_sends_notification", ["notification_id"], unique=False)


def downgrade():
    with op.batch_alter_table("rule_sends", schema=None) as batch_op:
        batch_op.drop_index("ix_rule_sends_notification")
        batch_op.drop_index("ix_rule_sends_rule_status")
    op.drop_table("rule_sends")
    op.drop_table("rules")
