"""Tables of the modeler's workbench (issue 21): who submitted a prior set, why, the statements behind it.

Who (`created_by`, the token's name) and why (`note`) were already columns of prior_sets; this
adds `statements`: the outcome-scale statements a set was elicited from, with how well each is
met (the [meta] table of an elicited prior file), or NULL for a set written by hand.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prior_sets") as batch:
        batch.add_column(sa.Column("statements", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prior_sets") as batch:
        batch.drop_column("statements")
