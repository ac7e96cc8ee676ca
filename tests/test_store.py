import datetime as dt
import threading

import pytest
from helpers import episode_row
from sqlalchemy import inspect

from forecasting.domain.episodes import validate_episodes
from forecasting.store import EpisodeFilter, UnknownEpisodeError, connect
from forecasting.store.db import DatabaseMissingError, SchemaOutOfDateError, schema_is_current

TODAY = dt.date(2026, 11, 29)
TYPES = ["sigint", "humint", "geoint", "sources", "methods", "cyber", "ct", "military"]


def _episodes(codebook, *rows):
    return validate_episodes(list(enumerate(rows, start=2)), codebook, TODAY)


def _import(database, codebook, *rows, actor="tester"):
    return database.episodes.import_episodes(_episodes(codebook, *rows), actor=actor,
                                             codebook_version=codebook.version)


def test_migrations_create_every_table_and_mark_the_schema_current(database):
    tables = set(inspect(database.engine).get_table_names())
    assert {"episodes", "episode_revisions", "audit_log", "alembic_version"} <= tables
    assert schema_is_current(database.engine)


def test_an_uninitialised_database_is_refused_with_the_fix(tmp_path):
    (tmp_path / "empty.sqlite3").touch()
    database = connect(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with pytest.raises(SchemaOutOfDateError, match="run `forecast init`"):
        database.ensure_current()


def test_a_missing_sqlite_file_is_an_error_naming_it_and_the_command_that_creates_it(tmp_path):
    path = tmp_path / "instance" / "forecasting.sqlite3"
    database = connect(f"sqlite:///{path}")
    with pytest.raises(DatabaseMissingError,
                       match=rf"the SQLite database file {path} does not exist: .*run "
                             r"`forecast init`, which creates it"):
        database.ensure_current()
    with pytest.raises(DatabaseMissingError):
        database.episodes.count()
    assert not path.exists() and not path.parent.exists(), "nothing was created"


def test_a_database_file_deleted_while_in_use_is_not_recreated_empty(tmp_path, codebook):
    path = tmp_path / "store.sqlite3"
    connect(f"sqlite:///{path}", migrate=True).dispose()  # set-up creates it
    database = connect(f"sqlite:///{path}")
    database.ensure_current()
    database.dispose()  # the pool's connections closed: the next use opens the file again
    for file in tmp_path.glob("store.sqlite3*"):
        file.unlink()
    with pytest.raises(DatabaseMissingError, match="does not exist"):
        database.episodes.count()
    assert not path.exists()


def test_importing_the_same_rows_twice_is_idempotent(database, codebook):
    rows = [episode_row(intel_type=t) for t in TYPES]
    first = _import(database, codebook, *rows)
    second = _import(database, codebook, *rows)
    assert (first.inserted, first.revised, first.unchanged) == (8, 0, 0)
    assert (second.inserted, second.revised, second.unchanged) == (0, 0, 8)
    assert database.episodes.count() == 8


def test_a_changed_row_is_a_revision_that_keeps_the_old_values(database, codebook):
    _import(database, codebook, episode_row(), actor="alice")
    before = database.episodes.get("2017-oval-office-disclosure", "ISR", "humint")
    summary = _import(database, codebook, episode_row(level=2, notes="second source"), actor="bob")
    assert (summary.inserted, summary.revised) == (0, 1)
    after = database.episodes.get("2017-oval-office-disclosure", "ISR", "humint")
    assert after["id"] == before["id"], "ids never change once issued"
    assert after["level"] == 2 and after["revision"] == 2
    first, second = after["history"]
    assert first["changed_by"] == "alice" and first["values"]["level"] == 1
    assert second["changed_by"] == "bob"
    assert second["changed_fields"] == {"level": {"from": 1, "to": 2},
                                        "notes": {"from": "", "to": "second source"}}
    assert second["codebook_version"] == codebook.version


def test_every_row_records_its_codebook_version(database, codebook):
    _import(database, codebook, episode_row())
    [record] = database.episodes.list()
    assert record["codebook_version"] == codebook.version == "1.0.0"


def test_a_failure_mid_import_writes_nothing(database, codebook):
    _import(database, codebook, episode_row())
    batch = _episodes(codebook, *[episode_row(intel_type=t, level=2) for t in TYPES])

    def explode(_):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        database.episodes.import_episodes(batch, actor="x", codebook_version="1.0.0",
                                          progress=explode)
    assert database.episodes.count() == 1
    assert database.episodes.get("2017-oval-office-disclosure", "ISR", "humint")["level"] == 1


def test_filters_and_pagination(database, codebook):
    rows = [episode_row(trigger_id=f"t{i}", trigger_date=f"20{10 + i}-01-01", partner=p,
                        intel_type=t, level=i % 4)
            for i, (p, t) in enumerate([("GBR", "sigint"), ("GBR", "ct"), ("ISR", "humint"),
                                        ("DEU", "sigint"), ("DEU", "cyber")])]
    _import(database, codebook, *rows)
    assert database.episodes.count(EpisodeFilter(partner=["GBR", "DEU"])) == 4
    assert database.episodes.count(EpisodeFilter(intel_type=["sigint"], level=[0, 3])) == 2
    assert database.episodes.count(EpisodeFilter(since=dt.date(2012, 1, 1),
                                                 until=dt.date(2013, 12, 31))) == 2
    pages = [database.episodes.list(limit=2, offset=o) for o in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [r["trigger_id"] for p in pages for r in p] == ["t0", "t1", "t2", "t3", "t4"]


def test_unknown_episode_is_a_clear_error(database):
    with pytest.raises(UnknownEpisodeError, match="no episode with trigger_id='nope'"):
        database.episodes.get("nope", "GBR", "sigint")


def test_export_rows_read_back_as_the_same_episodes(database, codebook):
    rows = [episode_row(intel_type=t, level=i % 4) for i, t in enumerate(TYPES)]
    _import(database, codebook, *rows)
    exported = list(database.episodes.iter_rows())
    assert _episodes(codebook, *exported) == _episodes(codebook, *rows)


def test_frame_and_stats_describe_the_data(database, codebook):
    _import(database, codebook, *[episode_row(intel_type=t, level=int(t == "ct")) for t in TYPES])
    frame = database.episodes.frame()
    assert len(frame) == 8 and frame["level"].sum() == 1
    assert database.episodes.stats() == {"episodes": 8, "partners": 1, "triggers": 1,
                                         "intel_types": 8, "restricted": 1}


def test_latest_revision_grows_on_insert_and_revision_only(database, codebook):
    first = database.episodes.latest_revision_id()
    _import(database, codebook, episode_row())
    second = database.episodes.latest_revision_id()
    _import(database, codebook, episode_row())
    assert database.episodes.latest_revision_id() == second > first
    _import(database, codebook, episode_row(level=3))
    assert database.episodes.latest_revision_id() > second


def _refit_audit(database) -> list[tuple[str, dict]]:
    return [(e["actor"], e["detail"]) for e in reversed(database.audit_entries())
            if e["action"] == "refit:request"]


def test_every_refit_request_is_audited_with_who_asked_coalesced_ones_too(database):
    first, created = database.refits.request("episodes", "coder-alice", 10)
    again, created_again = database.refits.request("priors", "modeler-bob", 10)
    assert created and not created_again and again["id"] == first["id"]
    assert again["coalesced"] == 1
    assert _refit_audit(database) == [
        ("coder-alice", {"job": first["id"], "reason": "episodes", "coalesced": False}),
        ("modeler-bob", {"job": first["id"], "reason": "priors", "coalesced": True})]


def test_refit_requests_at_once_queue_one_job_and_audit_every_asker(database):
    barrier = threading.Barrier(12)
    results, errors = [], []

    def ask(number):
        barrier.wait()
        try:
            results.append(database.refits.request("episodes", f"client-{number}", 10))
        except Exception as exc:  # noqa: BLE001 - any failure is what the test reports
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(created for _, created in results) == 1
    assert len({job["id"] for job, _ in results}) == 1
    [queued] = database.refits.active()
    assert queued["coalesced"] == 11
    audit = _refit_audit(database)
    assert sorted(actor for actor, _ in audit) == sorted(f"client-{n}" for n in range(12))
    assert [d["coalesced"] for _, d in audit].count(False) == 1
