"""a run that fired a digest of several triggers names it (cancelling one trigger then no longer stops the digest)

Revision ID: 0018_wfdigest
Revises: 0017_wfstats
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_wfdigest"
down_revision = "0017_wfstats"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.add_column("workflow_runs", sa.Column("carries_digest_id", BigId, nullable=True))


def downgrade():
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.drop_column("carries_digest_id")
