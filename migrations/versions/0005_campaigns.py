"""campaigns, their batches, and notifications.campaign_id with the unique (campaign, recipient) key

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-25 02:30:00

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade():
    op.create_table(
        "campaigns",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("template_id", BIG_ID, nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=True),
        sa.Column("channels", JSON, nullable=False),
        sa.Column("audience_filter", JSON, nullable=False),
        sa.Column("audience_name", sa.String(length=255), nullable=True),
        sa.Column("schedule", sa.String(length=16), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("local_time", sa.Time(), nullable=True),
        sa.Column("throttle_per_minute", sa.Integer(), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("planned", sa.Integer(), nullable=False),
        sa.Column("created_by", BIG_ID, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("launched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["staff_users.id"], name=op.f("fk_campaigns_created_by_staff_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["template_id"], ["templates.id"], name=op.f("fk_campaigns_template_id_templates")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.create_index("ix_campaigns_status_created", ["status", "created_at"], unique=False)

    op.create_table(
        "campaign_batches",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("campaign_id", BIG_ID, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("first_id", BIG_ID, nullable=False),
        sa.Column("last_id", BIG_ID, nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("by_zone", sa.Boolean(), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=True),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_batches_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_batches")),
        sa.UniqueConstraint("campaign_id", "seq", name=op.f("uq_campaign_batches_campaign_id_seq")),
    )
    with op.batch_alter_table("campaign_batches", schema=None) as batch_op:
        batch_op.create_index("ix_campaign_batches_campaign_status", ["campaign_id", "status"], unique=False)

    # NULLs are distinct in a unique index on SQLite and PostgreSQL: API notifications are unaffected.
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("campaign_id", BIG_ID, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_notifications_campaign_id_campaigns"),
            "campaigns",
            ["campaign_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index("ix_notifications_campaign_recipient", ["campaign_id", "recipient_id"], unique=True)


def downgrade():
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_campaign_recipient")
        batch_op.drop_constraint(batch_op.f("fk_notifications_campaign_id_campaigns"), type_="foreignkey")
        batch_op.drop_column("campaign_id")

    with op.batch_alter_table("campaign_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_batches_campaign_status")
    op.drop_table("campaign_batches")

    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index("ix_campaigns_status_created")
    op.drop_table("campaigns")
