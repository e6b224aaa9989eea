"""broadcasts: in-app-only sends to very large audiences, stored once and fanned out on read

Revision ID: 0016_broadcasts
Revises: 0015_workflows
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016_broadcasts"
down_revision = "0015_workflows"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade():
    op.create_table(
        "broadcasts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("campaign_id", BigId, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("audience_filter", Json, nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("launched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("targeted", sa.Integer(), nullable=True),
        sa.UniqueConstraint("campaign_id"),
    )
    op.create_index("ix_broadcasts_launched", "broadcasts", ["launched_at"])


def downgrade():
    op.drop_index("ix_broadcasts_launched", table_name="broadcasts")
    op.drop_table("broadcasts")
