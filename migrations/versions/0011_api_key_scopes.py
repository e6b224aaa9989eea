"""API keys hold scopes; keys made before scopes existed keep every scope they could use

Revision ID: 0011
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Every scope as of this revision, written out: a migration must not change when app/api/scopes.py does.
FULL_SCOPE = "notifications:send notifications:read notifications:write users:read users:write users:erase"


def upgrade():
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.String(length=255), nullable=False, server_default=FULL_SCOPE))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column("scopes", server_default=None)


def downgrade():
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("scopes")
