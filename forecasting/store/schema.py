"""Table definitions. Alembic migrations (forecasting/migrations) create and evolve them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UTCDateTime(TypeDecorator):
    """A timestamp that is timezone-aware UTC in Python on every database.

    The column stays `DateTime(timezone=True)` (PostgreSQL: timestamptz; SQLite: text without
    an offset), so no migration is involved. SQLite has no time zones: values are stored as
    UTC wall time and come back naive, so they are marked UTC on the way out; PostgreSQL hands
    them back in the session's time zone, so they are converted to UTC. Naive values are
    refused on the way in: their zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} for a UTC timestamp column; "
                             "pass an aware one, e.g. datetime.now(datetime.UTC)")
        value = value.astimezone(dt.UTC)
        # SQLite would drop any offset silently: store UTC wall time explicitly
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per natural key (trigger_id, partner, intel_type), holding its latest values.
# `id` never changes once issued; earlier values live in episode_revisions.
episodes = Table(
    "episodes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trigger_id", String(120), nullable=False),
    Column("partner", String(16), nullable=False),
    Column("intel_type", String(64), nullable=False),
    Column("trigger_type", String(64), nullable=False),
    Column("trigger_date", Date, nullable=False),
    Column("severity", Integer, nullable=False),
    Column("alignment", Integer, nullable=False),
    Column("level", Integer, nullable=False),
    Column("sources", Text, nullable=False),
    Column("coder", String(120), nullable=False),
    Column("confidence", String(16), nullable=False),
    Column("trigger_description", Text, nullable=False, default=""),
    Column("coded_at", Date, nullable=True),
    Column("notes", Text, nullable=False, default=""),
    Column("codebook_version", String(32), nullable=False),
    Column("revision", Integer, nullable=False, default=1),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("trigger_id", "partner", "intel_type", name="uq_episodes_natural_key"),
    Index("ix_episodes_partner_type", "partner", "intel_type"),
    Index("ix_episodes_trigger_date", "trigger_date"),
)

# Every version of every episode, the first included: who changed what, when.
episode_revisions = Table(
    "episode_revisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("episode_id", Integer, ForeignKey("episodes.id"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("values", JSON, nullable=False),
    Column("changed_fields", JSON, nullable=False),
    Column("changed_by", String(120), nullable=False),
    Column("changed_at", UTCDateTime(), nullable=False),
    Column("codebook_version", String(32), nullable=False),
    Column("import_id", Integer, ForeignKey("audit_log.id"), nullable=True),
    UniqueConstraint("episode_id", "revision", name="uq_episode_revisions_episode_revision"),
    Index("ix_episode_revisions_episode_id", "episode_id"),
)

# Every write, by whom (a token's name or the CLI user), with a summary.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(120), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", JSON, nullable=False),
)

# API tokens, stored as SHA-256 digests only; optionally expiring.
tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(120), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("expires_at", UTCDateTime(), nullable=True),  # NULL: never expires
)

# Every prior set ever submitted; the newest is the one the next fit uses.
prior_sets = Table(
    "prior_sets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("content_hash", String(64), nullable=False),
    Column("priors", JSON, nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("created_by", String(120), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # issue 21 (migration 0008): the outcome-scale statements the set was elicited from
    Column("statements", JSON, nullable=True),
)

# Refit jobs: the durable record of every refit (queued, running, and their outcome).
# The task queue only delivers job ids; this table is what survives crashes.
refit_jobs = Table(
    "refit_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("status", String(16), nullable=False),  # queued running succeeded failed skipped error
    Column("reason", String(32), nullable=False),  # episodes priors manual periodic
    Column("requested_by", String(120), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("not_before", UTCDateTime(), nullable=False),
    Column("coalesced", Integer, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker", String(120), nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("heartbeat_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("version", String(64), nullable=True),
    Column("verdict", String(8), nullable=True),
    Column("promoted", Integer, nullable=True),
    Column("episodes", Integer, nullable=True),
    Column("data_hash", String(128), nullable=True),
    Column("detail", JSON, nullable=True),  # gate reasons, error text, timings
    Index("ix_refit_jobs_status", "status"),
)

# -- issue 19: the forecast ledger ------------------------------------------------------------
# Append-only (the migration makes the database refuse UPDATE and DELETE): registered
# triggers, their frozen forecasts, their scores and corrections, in one hash chain ordered by
# `seq` (forecasting/ledger/chain.py). `payload` is canonical JSON text, hashed as stored.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", Integer, nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # trigger forecast score correction
    Column("trigger_id", String(120), nullable=False),
    Column("partner", String(16), nullable=True),
    Column("intel_type", String(64), nullable=True),
    Column("model_version", String(64), nullable=True),
    Column("refers_to", Integer, nullable=True),  # the seq of the entry scored or corrected
    Column("actor", String(120), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Index("ix_ledger_entries_trigger_id", "trigger_id"),
)

# --- coding quality (issue 20): every coder's coding of an episode, and adjudications -------
# Append-only: a coder's current coding of an episode is their newest row. An episode gets
# rows here once a second coder codes it (the first coding is copied from the episode then);
# the episodes table keeps holding the value the model reads (forecasting.coding.agreement).
codings = Table(
    "codings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("episode_id", Integer, ForeignKey("episodes.id"), nullable=False),
    Column("coder", String(120), nullable=False),
    Column("values", JSON, nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("recorded_by", String(120), nullable=False),
    Column("import_id", Integer, ForeignKey("audit_log.id"), nullable=True),
    Index("ix_codings_episode_id", "episode_id"),
)

# An adjudicator's final value of a double-coded episode, with the reason; the value itself
# is written to the episode as a revision (episode_revisions) by the same transaction.
adjudications = Table(
    "adjudications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("episode_id", Integer, ForeignKey("episodes.id"), nullable=False),
    Column("adjudicator", String(120), nullable=False),
    Column("reason", Text, nullable=False),
    Column("values", JSON, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("audit_id", Integer, ForeignKey("audit_log.id"), nullable=False),
    Index("ix_adjudications_episode_id", "episode_id"),
)
