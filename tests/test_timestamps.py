"""Every timestamp the store hands back is timezone-aware UTC, on SQLite and on PostgreSQL.

SQLite has no time zones (it kept the UTC wall time and handed it back naive) and PostgreSQL
answers in the session's time zone: both must give the same aware UTC instant back, and
"+00:00" in every ISO string the API and the CLI show.
"""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from helpers import episode_row
from sqlalchemy import create_engine, insert, select
from sqlalchemy.exc import StatementError

from forecasting.domain.episodes import validate_episodes
from forecasting.store import Database
from forecasting.store.schema import audit_log, metadata

# An instant written with an offset that is not UTC's, microseconds included.
KOLKATA = dt.timezone(dt.timedelta(hours=5, minutes=30))
INSTANT = dt.datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=KOLKATA)


def _assert_utc_iso(text: str, earliest: dt.datetime, latest: dt.datetime) -> None:
    assert text.endswith("+00:00"), text
    moment = dt.datetime.fromisoformat(text)
    assert moment.utcoffset() == dt.timedelta(0), text
    # the right instant, not local wall time labelled UTC
    assert earliest - dt.timedelta(seconds=1) <= moment <= latest + dt.timedelta(seconds=1), text


def test_every_timestamp_the_stores_return_is_aware_utc_and_now(database, codebook):
    before = dt.datetime.now(dt.UTC)
    episodes = validate_episodes([(2, episode_row())], codebook)
    database.episodes.import_episodes(episodes, actor="tester", codebook_version=codebook.version)
    database.episodes.import_episodes(validate_episodes([(2, episode_row(level=2))], codebook),
                                      actor="tester", codebook_version=codebook.version)
    database.tokens.create("bot", "coder")
    database.tokens.revoke("bot")
    database.priors.save({"beta_severity": {"dist": "Normal"}}, "hash-1", actor="tester")
    job, _ = database.refits.request("manual", "tester", delay_seconds=0)
    assert database.refits.claim(job["id"], "worker-1", stale_after=60) == "claimed"
    database.refits.heartbeat(job["id"])
    finished = database.refits.finish(job["id"], "succeeded")
    database.audit("model:promote", "tester", {"version": "abc"})
    after = dt.datetime.now(dt.UTC)

    episode = database.episodes.get("2017-oval-office-disclosure", "ISR", "humint")
    [token] = database.tokens.list()
    found = [episode["created_at"], episode["updated_at"],
             *(h["changed_at"] for h in episode["history"]),
             token["created_at"], token["revoked_at"],
             database.priors.latest()["created_at"],
             *(finished[k] for k in ("requested_at", "not_before", "started_at", "heartbeat_at",
                                     "finished_at")),
             *(entry["at"] for entry in database.audit_entries()),
             database.refits.first_change_after(0)]
    for text in found:
        _assert_utc_iso(text, before, after)
    assert finished["duration_s"] >= 0


def test_an_instant_written_with_any_offset_comes_back_the_same_in_utc(database):
    with database.engine.begin() as conn:
        conn.execute(insert(audit_log).values(at=INSTANT, actor="tester", action="test",
                                              detail={}))
    [entry] = database.audit_entries()
    assert entry["at"] == "2026-03-28T20:00:15.123456+00:00"
    with database.engine.connect() as conn:
        at = conn.execute(select(audit_log.c.at)).scalar_one()
    assert at == INSTANT and at.tzinfo is dt.UTC


def test_postgresql_answers_in_utc_whatever_the_session_time_zone(database):
    if database.engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL has a session time zone")
    with database.engine.begin() as conn:
        conn.execute(insert(audit_log).values(at=INSTANT, actor="tester", action="test",
                                              detail={}))
    engine = create_engine(database.engine.url,
                           connect_args={"options": "-c TimeZone=America/New_York"})
    try:
        [entry] = Database(engine).audit_entries()
    finally:
        engine.dispose()
    assert entry["at"] == "2026-03-28T20:00:15.123456+00:00"


def test_a_naive_timestamp_is_refused_rather_than_guessed(database):
    with pytest.raises(StatementError, match="naive datetime"), database.engine.begin() as conn:
        conn.execute(insert(audit_log).values(at=dt.datetime(2026, 3, 29, 1, 30), actor="x",
                                              action="test", detail={}))
    assert database.audit_entries() == []


def test_the_migrated_schema_is_the_declared_one(database):
    """The UTC timestamp type changes no column: the migrations still build exactly the
    tables the code declares (else a migration would be missing)."""
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
