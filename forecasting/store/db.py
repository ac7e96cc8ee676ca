"""Engine set-up and schema migration. SQLite (WAL, full sync) by default, PostgreSQL by URL."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, insert, select
from sqlalchemy.engine import Engine, make_url

from forecasting.store.codings import CodingStore
from forecasting.store.episodes import EpisodeStore
from forecasting.store.priors import PriorStore
from forecasting.store.refits import RefitJobStore
from forecasting.store.schema import audit_log
from forecasting.store.tokens import TokenStore

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class SchemaOutOfDateError(RuntimeError):
    """The database is behind the code's migrations; run `forecast init`."""


class DatabaseMissingError(SchemaOutOfDateError):
    """The SQLite file does not exist. Only set-up (`forecast init`, `forecast run`) creates
    one: anything that serves or reads would otherwise answer from a new, empty database."""

    def __init__(self, path: Path):
        self.path = path
        # the wording of SchemaOutOfDateError, with the file and what creates it
        super().__init__(f"the SQLite database file {path} does not exist: the database is not "
                         "initialised or is behind this version; run `forecast init`, which "
                         "creates it (as `forecast run` does on its first start)")


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the API) run while a writer imports; FULL sync makes every
    # committed import survive a power cut.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None  # in memory, or a URI the caller manages
    return Path(parsed.database).resolve()


def _open_existing_only(path: Path):
    """Connect in SQLite's read-write mode, which never creates a file: a database deleted
    while the service runs is an error at the next connection, not a new empty one."""

    def do_connect(_dialect, _record, cargs, cparams):
        if not path.exists():
            raise DatabaseMissingError(path)
        cargs[0] = f"file:{quote(str(path))}?mode=rw"
        cparams["uri"] = True

    return do_connect


def make_engine(url: str, create: bool = False) -> Engine:
    """An engine for `url`. A SQLite file is created only when `create` (set-up paths);
    otherwise every connection to a missing one raises DatabaseMissingError. The engine
    itself is made either way: a web app on a missing database starts, and answers 503
    naming the fix (its /ready says not ready) rather than serving an empty database."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is not None and create:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        if path is not None and not create:
            event.listen(engine, "do_connect", _open_existing_only(path))
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # configparser reads "%" as interpolation: a URL with an escaped character (a password,
    # ?options=-c%20...) would fail
    config.set_main_option("sqlalchemy.url",
                           engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    command.upgrade(alembic_config(engine), "head")


def schema_is_current(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


class Database:
    """The store's entry point: an engine plus the repositories built on it."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.episodes = EpisodeStore(engine)
        self.tokens = TokenStore(engine)
        self.priors = PriorStore(engine)
        self.refits = RefitJobStore(engine)
        self.codings = CodingStore(engine)

    def audit(self, action: str, actor: str, detail: dict) -> int:
        """Record a write that is not an episode import (promotion, priors, refits)."""
        with self.engine.begin() as conn:
            return conn.execute(insert(audit_log).values(
                at=dt.datetime.now(dt.UTC), actor=actor, action=action, detail=detail,
            ).returning(audit_log.c.id)).scalar_one()

    def audit_entries(self, limit: int = 100) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(limit))
            return [{"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action,
                     "detail": r.detail} for r in rows]

    def audit_details(self, action: str, *, until: dt.datetime | None = None,
                      limit: int | None = None) -> list[dict]:
        """The details of the `action` entries (those recorded at or before `until`, if
        given), newest first."""
        query = select(audit_log.c.detail).where(audit_log.c.action == action)
        if until is not None:
            query = query.where(audit_log.c.at <= until)
        query = query.order_by(audit_log.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [detail or {} for (detail,) in conn.execute(query)]

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def ensure_current(self) -> None:
        if not schema_is_current(self.engine):
            raise SchemaOutOfDateError(
                f"the database at {self.url} is not initialised or is behind this version; "
                "run `forecast init`"
            )

    def dispose(self) -> None:
        self.engine.dispose()


def postgres_unreachable(url: str, timeout_seconds: int = 3) -> str | None:
    """Why the PostgreSQL database at `url` cannot be used (None when it answers a query):
    the test suite and the reliability harness skip their PostgreSQL runs with this reason."""
    try:
        engine = create_engine(url, connect_args={"connect_timeout": timeout_seconds})
        with engine.connect() as conn:
            conn.execute(select(1))
        engine.dispose()
    except Exception as exc:  # any failure means: no server to run against
        shown = make_url(url).render_as_string(hide_password=True)
        first_line = (str(exc).splitlines() or [""])[0]
        return f"no PostgreSQL server at {shown} ({type(exc).__name__}: {first_line})"
    return None


def connect(url: str, migrate: bool = False) -> Database:
    """The database at `url`. `migrate` (set-up: `forecast init`, `forecast run`) creates a
    missing SQLite file and brings the schema up to date; without it, using a missing file
    raises DatabaseMissingError, so that nothing that serves or reads creates an empty one."""
    engine = make_engine(url, create=migrate)
    if migrate:
        upgrade(engine)
    return Database(engine)
