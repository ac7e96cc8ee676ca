"""Durable storage: episodes with their revisions, audit log (SQLAlchemy Core, Alembic)."""

from .db import Database, connect
from .episodes import EpisodeFilter, ImportSummary, UnknownEpisodeError

__all__ = ["Database", "EpisodeFilter", "ImportSummary", "UnknownEpisodeError", "connect"]
