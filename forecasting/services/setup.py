"""First-run set-up shared by `forecast init`, `forecast run` and the API: database, seed data."""

from __future__ import annotations

import logging
from collections.abc import Callable

from forecasting.domain.codebook import Codebook, load_codebook
from forecasting.domain.interchange import episodes_from_rows, read_rows
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


def _untracked(rows):
    return rows


def import_file(database: Database, codebook: Codebook, path, actor: str, fmt: str | None = None,
                track: Callable = _untracked, write_progress: Callable | None = None
                ) -> ImportSummary:
    """Validate a whole file, then write it in one transaction (all or nothing).

    `track` wraps the parsed rows (a progress bar over validation); `write_progress`
    is called with the number of rows written so far.
    """
    episodes = episodes_from_rows(track(read_rows(path, fmt)), codebook)
    return database.episodes.import_episodes(
        episodes, actor=actor, codebook_version=codebook.version, source=str(path),
        progress=write_progress,
    )


def seed_if_empty(database: Database, settings: Settings) -> ImportSummary | None:
    """Import the shipped seed episodes into an empty database; otherwise do nothing."""
    if database.episodes.count() > 0:
        return None
    codebook = load_codebook(settings.codebook_path)
    summary = import_file(database, codebook, settings.seed_episodes_path, actor="seed")
    log.info("imported %d seed episodes", summary.inserted)
    return summary
