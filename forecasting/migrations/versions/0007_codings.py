"""Tables of coding quality (issue 20): every coder's coding of an episode, adjudications.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "codings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("episode_id", sa.Integer, sa.ForeignKey("episodes.id"), nullable=False),
        sa.Column("coder", sa.String(120), nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(120), nullable=False),
        sa.Column("import_id", sa.Integer, sa.ForeignKey("audit_log.id"), nullable=True),
    )
    op.create_index("ix_codings_episode_id", "codings", ["episode_id"])
    op.create_table(
        "adjudications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("episode_id", sa.Integer, sa.ForeignKey("episodes.id"), nullable=False),
        sa.Column("adjudicator", sa.String(120), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("audit_id", sa.Integer, sa.ForeignKey("audit_log.id"), nullable=False),
    )
    op.create_index("ix_adjudications_episode_id", "adjudications", ["episode_id"])


def downgrade() -> None:
    op.drop_index("ix_adjudications_episode_id", "adjudications")
    op.drop_table("adjudications")
    op.drop_index("ix_codings_episode_id", "codings")
    op.drop_table("codings")
