"""Durable storage: episodes with their revisions, audit log (SQLAlchemy Core, Alembic)."""

from forecasting.store.db import Database, connect
from forecasting.store.episodes import EpisodeFilter, ImportSummary, UnknownEpisodeError

__all__ = ["Database", "EpisodeFilter", "ImportSummary", "UnknownEpisodeError", "connect"]
