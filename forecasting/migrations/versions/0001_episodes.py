"""Episodes, their revisions, and the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_table(
        "episodes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trigger_id", sa.String(120), nullable=False),
        sa.Column("partner", sa.String(16), nullable=False),
        sa.Column("intel_type", sa.String(64), nullable=False),
        sa.Column("trigger_type", sa.String(64), nullable=False),
        sa.Column("trigger_date", sa.Date, nullable=False),
        sa.Column("severity", sa.Integer, nullable=False),
        sa.Column("alignment", sa.Integer, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("sources", sa.Text, nullable=False),
        sa.Column("coder", sa.String(120), nullable=False),
        sa.Column("confidence", sa.String(16), nullable=False),
        sa.Column("trigger_description", sa.Text, nullable=False),
        sa.Column("coded_at", sa.Date, nullable=True),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("codebook_version", sa.String(32), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("trigger_id", "partner", "intel_type", name="uq_episodes_natural_key"),
    )
    op.create_index("ix_episodes_partner_type", "episodes", ["partner", "intel_type"])
    op.create_index("ix_episodes_trigger_date", "episodes", ["trigger_date"])
    op.create_table(
        "episode_revisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("episode_id", sa.Integer, sa.ForeignKey("episodes.id"), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.Column("changed_fields", sa.JSON, nullable=False),
        sa.Column("changed_by", sa.String(120), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("codebook_version", sa.String(32), nullable=False),
        sa.Column("import_id", sa.Integer, sa.ForeignKey("audit_log.id"), nullable=True),
        sa.UniqueConstraint("episode_id", "revision",
                            name="uq_episode_revisions_episode_revision"),
    )
    op.create_index("ix_episode_revisions_episode_id", "episode_revisions", ["episode_id"])


def downgrade() -> None:
    op.drop_table("episode_revisions")
    op.drop_index("ix_episodes_trigger_date", "episodes")
    op.drop_index("ix_episodes_partner_type", "episodes")
    op.drop_table("episodes")
    op.drop_table("audit_log")
