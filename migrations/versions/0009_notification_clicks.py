"""notifications remember the first click on their link, and on which channel

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clicked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("clicked_channel", sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("clicked_channel")
        batch_op.drop_column("clicked_at")
