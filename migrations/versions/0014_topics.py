"""topics and their subscribers; API runs (topic and audience sends) on the campaign path; keys get topic scopes

Campaigns may carry literal content instead of a template (an API run), and
an idempotency key may name the run it made instead of a notification. Keys
that could change users can change topic membership; keys that could read
users can read it.

Revision ID: 0014_topics
Revises: 0013_outbound_webhooks
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014_topics"
down_revision = "0013_outbound_webhooks"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade():
    op.create_table(
        "topics",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("user_can_leave", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("key"),
    )
    op.create_table(
        "topic_subscriptions",
        sa.Column("topic_id", BigId, sa.ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("recipient_id", BigId, sa.ForeignKey("recipients.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_topic_subscriptions_recipient", "topic_subscriptions", ["recipient_id"])
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.alter_column("template_id", existing_type=BigId, nullable=True)
        batch_op.add_column(sa.Column("content", Json, nullable=True))
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.alter_column("notification_id", existing_type=sa.String(length=32), nullable=True)
        batch_op.add_column(sa.Column("run_id", BigId, nullable=True))
        batch_op.create_foreign_key(
            "fk_idempotency_keys_run_id_campaigns", "campaigns", ["run_id"], ["id"], ondelete="CASCADE"
        )
    # Scope names as of this revision, written out (a migration must not change when app/api/scopes.py does).
    keys = sa.table("api_keys", sa.column("id", BigId), sa.column("scopes", sa.String(255)))
    connection = op.get_bind()
    for key_id, scopes in connection.execute(sa.select(keys.c.id, keys.c.scopes)).all():
        held = scopes.split()
        added = [
            new
            for old, new in (("users:read", "topics:read"), ("users:write", "topics:write"))
            if old in held and new not in held
        ]
        if added:
            connection.execute(keys.update().where(keys.c.id == key_id).values(scopes=" ".join(held + added)))


def downgrade():
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_constraint("fk_idempotency_keys_run_id_campaigns", type_="foreignkey")
        batch_op.drop_column("run_id")
    op.execute("DELETE FROM idempotency_keys WHERE notification_id IS NULL")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.alter_column("notification_id", existing_type=sa.String(length=32), nullable=False)
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("content")
    op.drop_index("ix_topic_subscriptions_recipient", table_name="topic_subscriptions")
    op.drop_table("topic_subscriptions")
    op.drop_table("topics")
