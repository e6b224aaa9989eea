"""notifications store their origin (api / campaign:<id> / rule:<id>), which decides the re-checks before a send

Existing rows are backfilled from what is known: the campaign they belong to,
else the rule whose sent log names them, else the API.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin", sa.String(length=64), nullable=False, server_default="api"))
    op.execute(
        "UPDATE notifications SET origin = 'campaign:' || CAST(campaign_id AS VARCHAR(20)) "
        "WHERE campaign_id IS NOT NULL"
    )
    op.execute(
        "UPDATE notifications SET origin = (SELECT 'rule:' || CAST(MIN(rule_sends.rule_id) AS VARCHAR(20)) "
        "FROM rule_sends WHERE rule_sends.notification_id = notifications.id) "
        "WHERE campaign_id IS NULL AND id IN (SELECT notification_id FROM rule_sends WHERE notification_id IS NOT NULL)"
    )


def downgrade():
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("origin")
