"""First-run set-up shared by `forecast init`, `forecast run` and the API: database, seed data."""

from __future__ import annotations

import logging

from forecasting.domain.codebook import Codebook, load_codebook
from forecasting.domain.interchange import read_rows
from forecasting.services.episodes import store_episodes
from forecasting.settings import Settings
from forecasting.store import Database, ImportSummary, connect

log = logging.getLogger(__name__)


def open_database(settings: Settings, migrate: bool = False) -> Database:
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    return connect(settings.database_url, migrate=migrate)


def initialise(settings: Settings) -> Database:
    """Create the instance folder, migrate the database and the model registry folder."""
    database = open_database(settings, migrate=True)
    settings.registry_path.mkdir(parents=True, exist_ok=True)
    return database


def import_file(database: Database, codebook: Codebook, path, actor: str, fmt: str | None = None
                ) -> ImportSummary:
    """Validate a whole file and write it all or nothing, queueing no refit.

    For first-run seeding (a fit follows at once) and benchmarks; users' imports go
    through forecasting.services.episodes, which queues the refit.
    """
    return store_episodes(database, codebook, read_rows(path, fmt), actor=actor,
                          source=str(path))


def seed_if_empty(database: Database, settings: Settings) -> ImportSummary | None:
    """Import the shipped seed episodes into an empty database; otherwise do nothing."""
    if database.episodes.count() > 0:
        return None
    codebook = load_codebook(settings.codebook_path)
    summary = import_file(database, codebook, settings.seed_episodes_path, actor="seed")
    log.info("imported %d seed episodes", summary.inserted)
    return summary
