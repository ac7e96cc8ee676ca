"""Database fixtures: SQLite always, PostgreSQL where a server is reachable."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text

from forecasting.settings import load_settings
from forecasting.store import connect
from forecasting.store.db import postgres_unreachable
from forecasting.store.schema import metadata

POSTGRES_URL = os.environ.get(
    "FORECAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _reset_postgres() -> None:
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


@pytest.fixture
def settings(tmp_path):
    """Settings rooted at a fresh temporary instance folder (embedded SQLite)."""
    return load_settings({"FORECAST_INSTANCE": str(tmp_path / "instance")})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, tmp_path):
    """A migrated, empty database: SQLite file, then PostgreSQL (skipped if unreachable)."""
    if request.param == "sqlite":
        db = connect(f"sqlite:///{tmp_path / 'store.sqlite3'}", migrate=True)
    else:
        if reason := postgres_unreachable(POSTGRES_URL):
            pytest.skip(reason)
        _reset_postgres()
        db = connect(POSTGRES_URL, migrate=True)
    yield db
    db.dispose()


class RecordingRefits:
    """A refit service that only records the requests an import makes (its other side
    effect); its settings carry the request limits."""

    def __init__(self, settings):
        self.settings, self.requests = settings, []

    def request(self, reason, actor):
        self.requests.append((reason, actor))
        return {"id": len(self.requests), "status": "queued", "reason": reason}


def database_of(frame):
    """A stand-in database that holds `frame`, every episode single-coded (the evaluation
    reports read the episodes a fit is fed through it)."""
    from types import SimpleNamespace

    if "id" not in frame:
        frame = frame.assign(id=range(1, len(frame) + 1))
    return SimpleNamespace(episodes=SimpleNamespace(frame=lambda: frame),
                           codings=SimpleNamespace(coverage=lambda ids: {"held_back": []}))
