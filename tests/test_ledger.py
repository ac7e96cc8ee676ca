"""The forecast ledger (issue 19): frozen forecasts, scored when outcomes are coded, in one
hash chain that nothing edits. Service level, on the API fixture's instance and model."""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pytest
from fixtures_store import RecordingRefits
from helpers import episode_row
from sqlalchemy import text

from forecasting.evaluation.calibration import randomized_pit
from forecasting.evaluation.scoring import score_episodes
from forecasting.ledger import resolution
from forecasting.ledger.chain import GENESIS, check_chain, entry_hash
from forecasting.registry import Registry
from forecasting.services import ledger
from forecasting.services import models as model_service
from forecasting.services.episodes import import_episodes
from forecasting.serving.forecasts import ForecastEngine
from forecasting.settings import load_settings
from forecasting.store import connect
from forecasting.store.ledger import LedgerStore

TRIGGER = "2026-12-announced-leak"
SCENARIO = {"trigger_type": "disclosure_incident", "trigger_date": "2026-11-30", "severity": 3,
            "alignment": 1}


@pytest.fixture
def world(api_settings, served_model, codebook):
    """The API fixture's instance (8 coded episodes, a served version) as the service sees it."""
    database = connect(api_settings.database_url)
    engine = ForecastEngine.from_version(Registry(api_settings.registry_path), "current",
                                         codebook)

    class World:
        settings, db, eng, cb = api_settings, database, engine, codebook

        def register(self, **overrides):
            values = {"trigger_id": TRIGGER, "partners": ["ISR", "GBR"],
                      "intel_types": ["humint", "sigint"], **SCENARIO,
                      "description": "A leak announced before any partner reacted",
                      "sources": ["Example report, 2026-11-30"], **overrides}
            return ledger.register(database, engine, codebook, ledger.Registration(**values),
                                   actor="alice")

        def code(self, *rows):
            full = [episode_row(trigger_id=TRIGGER, coded_at="2026-11-30", **{**SCENARIO, **row})
                    for row in rows]
            return import_episodes(database, codebook, RecordingRefits(api_settings),
                                   enumerate(full, 2), actor="bob", source="test")

    yield World()
    database.dispose()


# -- the chain (pure) ---------------------------------------------------------------------------


def _chain(n: int) -> list[dict]:
    entries, previous = [], GENESIS
    for seq in range(1, n + 1):
        entry = {"id": seq, "seq": seq, "kind": "forecast", "trigger_id": "t", "partner": "ISR",
                 "intel_type": "humint", "model_version": "v1", "refers_to": None,
                 "actor": "alice", "recorded_at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
                 "payload": f'{{"p":{seq}}}', "prev_hash": previous}
        entry["hash"] = previous = entry_hash(entry)
        entries.append(entry)
    return entries


def test_an_untouched_chain_is_intact_and_its_head_is_the_last_hash():
    entries = _chain(4)
    check = check_chain(entries)
    assert check.intact and check.entries == 4 and check.head == entries[-1]["hash"]
    assert check_chain([]).as_dict() == {"intact": True, "entries": 0, "head": GENESIS,
                                         "first_broken": None}


@pytest.mark.parametrize("tamper, seq, problem", [
    (lambda e: e[2].update(payload='{"p":99}'), 3, "changed after it was written"),
    (lambda e: e[1].update(actor="mallory"), 2, "changed after it was written"),
    (lambda e: e.pop(1), 3, "removed, inserted or renumbered"),
    (lambda e: e.insert(1, e.pop(2)), 3, "removed, inserted or renumbered"),
])
def test_an_edited_removed_or_reordered_entry_breaks_the_chain_there(tamper, seq, problem):
    entries = _chain(4)
    tamper(entries)
    check = check_chain(entries)
    assert not check.intact and check.broken_seq == seq and problem in check.problem


def test_rehashing_an_edited_entry_still_breaks_the_next_link():
    entries = _chain(3)
    entries[1]["payload"] = '{"p":99}'
    entries[1]["hash"] = entry_hash(entries[1])
    check = check_chain(entries)
    assert check.broken_seq == 3 and "previous hash" in check.problem


# -- scoring (pure) ---------------------------------------------------------------------------


def test_scores_are_the_backtests_and_coverage_is_the_randomised_pits_expectation():
    probs = {"model": [0.5, 0.3, 0.15, 0.05], "climatology": [0.25, 0.25, 0.25, 0.25]}
    for level in range(4):
        scored = resolution.score_forecast(probs, level)
        table = score_episodes(np.array([probs["model"]]), np.array([level]))
        assert scored["scores"]["model"]["rps"] == pytest.approx(table["rps"][0], abs=1e-6)
        pits = randomized_pit(np.tile(probs["model"], (20000, 1)), np.full(20000, level))
        inside = np.mean((pits >= 0.05) & (pits <= 0.95))
        assert scored["coverage90"]["model"] == pytest.approx(inside, abs=0.01)
    # an outcome in the forecast's 5% upper tail is outside its 90% interval
    assert resolution.expected_coverage([0.7, 0.26, 0.03, 0.01], 3) == 0.0


def test_a_miss_is_the_wrong_side_of_even_odds_or_a_level_given_under_ten_percent():
    assert resolution.is_miss([0.8, 0.1, 0.05, 0.05], 2)
    assert resolution.is_miss([0.3, 0.65, 0.04, 0.01], 2)  # right side, level given 4%
    assert not resolution.is_miss([0.3, 0.3, 0.3, 0.1], 2)


# -- registering, resolving, the scorecard --------------------------------------------------------


def test_registering_freezes_every_open_cell_with_the_served_version_and_the_baselines(world):
    done = world.register()
    assert done["trigger"]["kind"] == "trigger" and done["trigger"]["actor"] == "alice"
    cells = [(f["partner"], f["intel_type"]) for f in done["forecasts"]]
    assert cells == [("ISR", "humint"), ("ISR", "sigint"), ("GBR", "humint"), ("GBR", "sigint")]
    for f in done["forecasts"]:
        assert f["model_version"] == world.eng.version and f["refers_to"] == done["trigger"]["seq"]
        forecast = f["payload"]["forecast"]
        assert forecast["scenario"] == {k: SCENARIO[k] for k in ("trigger_type", "severity",
                                                                 "alignment")}
        assert {"any_restriction", "levels", "model"} <= set(forecast)
        assert set(f["payload"]["probs"]) == {"model", "climatology", "partner", "intel_type",
                                              "no_pooling"}
        assert all(sum(p) == pytest.approx(1, abs=1e-5) for p in f["payload"]["probs"].values())
    assert [e["seq"] for e in LedgerStore(world.db.engine).entries()] == [1, 2, 3, 4, 5]
    assert ledger.verify(world.db).intact
    assert ledger.list_forecasts(world.db)["open"] == 4


def test_a_trigger_is_registered_once_and_a_coded_one_keeps_its_coding(world):
    world.register()
    with pytest.raises(ledger.LedgerConflictError, match="trigger_id: .* registered already"):
        world.register()
    # the fixture's coded trigger: severity 3 in its coding, so 2 is refused, naming the field
    coded = "2017-oval-office-disclosure"
    with pytest.raises(ledger.LedgerConflictError, match="severity: the trigger is coded with 3"):
        world.register(trigger_id=coded, **{**dict.fromkeys(SCENARIO), "severity": 2})
    done = world.register(trigger_id=coded, partners=["ISR", "GBR"], intel_types=["humint"],
                          **dict.fromkeys(SCENARIO))
    # ISR's humint reaction is coded already: only GBR's is frozen
    assert [(f["partner"], f["intel_type"]) for f in done["forecasts"]] == [("GBR", "humint")]
    assert done["trigger"]["payload"]["coded_before_registration"] == [["ISR", "humint"]]
    assert done["forecasts"][0]["payload"]["forecast"]["conditioned_on"]


def test_an_announced_trigger_needs_its_scenario_and_known_codes(world):
    with pytest.raises(ledger.LedgerError, match="severity: required"):
        world.register(severity=None)
    with pytest.raises(ValueError, match="partner: unknown code 'XXX'"):
        world.register(partners=["XXX"])
    assert LedgerStore(world.db.engine).count() == 0


def test_coding_the_outcomes_scores_the_frozen_forecasts_without_another_step(world):
    world.register()
    world.code({"partner": "ISR", "intel_type": "humint", "level": 2},
               {"partner": "GBR", "intel_type": "sigint", "level": 0})
    scores = LedgerStore(world.db.engine).entries(kinds=["score"])
    assert [(s["partner"], s["intel_type"]) for s in scores] == [("ISR", "humint"),
                                                                 ("GBR", "sigint")]
    first = scores[0]["payload"]
    assert first["outcome"]["level"] == 2 and first["outcome"]["revision"] == 1
    assert first["lead_days"] >= 0 and set(first["scores"]["model"]) >= {"brier", "log", "rps"}
    listed = ledger.list_forecasts(world.db)
    assert (listed["open"], listed["resolved"]) == (2, 2)
    card = ledger.scorecard(world.db, n_boot=200)
    assert card["overall"]["n"] == 2 and card["overall"]["triggers"] == 1
    assert set(card["by_version"]) == {world.eng.version}
    assert card["by_lead"]["under 1 day"]["n"] == 2  # coded minutes after the forecast
    assert card["overall"]["comparisons"]["climatology"]["brier"]["n"] == 2
    assert ledger.reliability_plot(world.db)[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_revised_outcome_is_scored_again_naming_the_revision_and_the_old_score_stays(world):
    world.register()
    world.code({"partner": "ISR", "intel_type": "humint", "level": 0})
    world.code({"partner": "ISR", "intel_type": "humint", "level": 3})
    first, second = LedgerStore(world.db.engine).entries(kinds=["score"])
    assert first["payload"]["outcome"]["level"] == 0
    assert second["payload"]["outcome"]["level"] == 3
    assert second["payload"]["outcome"]["revision"] == 2
    assert second["payload"]["outcome"]["revision_id"] > first["payload"]["outcome"]["revision_id"]
    assert second["payload"]["supersedes"] == first["seq"]
    assert ledger.scorecard(world.db, n_boot=10)["overall"]["n"] == 1  # the current score
    assert ledger.verify(world.db).intact


def test_an_update_appends_changed_forecasts_and_never_overwrites(world):
    frozen = world.register()["forecasts"]
    assert ledger.update(world.db, world.eng, world.cb, TRIGGER, "alice")["forecasts"] == []
    world.code({"partner": "ISR", "intel_type": "humint", "level": 3})
    done = ledger.update(world.db, world.eng, world.cb, TRIGGER, "alice", note="ISR suspended")
    assert done["resolved"] == [["ISR", "humint"]]
    assert {f["payload"]["note"] for f in done["forecasts"]} == {"ISR suspended"}
    # the other three now condition on ISR's suspension of HUMINT
    assert [(f["partner"], f["intel_type"]) for f in done["forecasts"]] == [
        ("ISR", "sigint"), ("GBR", "humint"), ("GBR", "sigint")]
    assert all(f["payload"]["forecast"]["conditioned_on"] == [
        {"partner": "ISR", "intel_type": "humint", "level": 3}] for f in done["forecasts"])
    stored = LedgerStore(world.db.engine).entries(seqs=[f["seq"] for f in frozen])
    assert [e["hash"] for e in stored] == [f["hash"] for f in frozen]  # untouched


def test_a_correction_is_a_new_entry_and_a_voided_forecast_leaves_the_scorecard(world):
    frozen = world.register()["forecasts"]
    world.code({"partner": "ISR", "intel_type": "humint", "level": 1})
    with pytest.raises(ledger.LedgerError, match="reason: say why"):
        ledger.correct(world.db, frozen[0]["seq"], "carol", "  ")
    fix = ledger.correct(world.db, frozen[0]["seq"], "carol", "wrong severity", void=True)
    assert (fix["kind"], fix["refers_to"], fix["actor"]) == ("correction", frozen[0]["seq"],
                                                              "carol")
    assert fix["payload"]["reason"] == "wrong severity"
    assert ledger.scorecard(world.db, n_boot=10)["overall"]["n"] == 0
    assert len(LedgerStore(world.db.engine).entries(kinds=["forecast"])) == 4
    with pytest.raises(ledger.LedgerNotFoundError, match="seq: the ledger has no entry 999"):
        ledger.correct(world.db, 999, "carol", "typo")


def test_a_version_a_ledger_entry_names_is_kept_by_pruning(world):
    world.register()
    registry = Registry(world.settings.registry_path)
    found = model_service.referenced_versions(world.settings, world.db, registry)
    assert any("forecast ledger" in reason for reason in found[world.eng.version])


# -- the store on both databases ----------------------------------------------------------------


def _append(database, n, actor="t"):
    store = LedgerStore(database.engine)
    for i in range(n):
        with store.appending() as appender:
            appender.append("forecast", "t", actor, {"i": i}, partner="ISR",
                            intel_type="humint", model_version="v1")


def test_the_database_refuses_to_update_or_delete_an_entry(database):
    _append(database, 2)
    for statement in ("UPDATE ledger_entries SET actor = 'mallory'",
                      "DELETE FROM ledger_entries"):
        with pytest.raises(Exception, match="append-only"), database.engine.begin() as conn:
            conn.execute(text(statement))
    assert LedgerStore(database.engine).count() == 2


def test_tampering_with_a_stored_row_by_sql_is_caught_by_verify(database):
    _append(database, 3)
    with database.engine.begin() as conn:  # a tamperer who can drop the guard first
        if database.engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER ledger_entries_no_update"))
        conn.execute(text("UPDATE ledger_entries SET payload = :p WHERE seq = 2"),
                     {"p": '{"i":7}'})
    check = ledger.verify(database)
    assert not check.intact and check.broken_seq == 2 and check.entries == 1


def test_concurrent_appends_make_one_unbroken_chain(database):
    threads = [threading.Thread(target=_append, args=(database, 5, f"w{i}")) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = LedgerStore(database.engine).entries()
    assert [e["seq"] for e in entries] == list(range(1, 21))
    assert ledger.verify(database).intact


def test_outcomes_coded_after_a_forecast_are_scored_on_both_databases(database, codebook):
    """The resolution path without a model: a frozen forecast entry, then its outcome coded by
    an import (and revised), on SQLite and PostgreSQL."""
    probs = {"model": [0.7, 0.2, 0.05, 0.05], "climatology": [0.25, 0.25, 0.25, 0.25]}
    with LedgerStore(database.engine).appending() as appender:
        reg = appender.append("trigger", TRIGGER, "alice", {"cells": [["ISR", "humint"]]})
        appender.append("forecast", TRIGGER, "alice", {"probs": probs}, partner="ISR",
                        intel_type="humint", model_version="v1", refers_to=reg["seq"])
    row = {"partner": "ISR", "intel_type": "humint", "coded_at": "2026-11-30", **SCENARIO}
    for level in (1, 1, 0):  # coded, re-imported unchanged, revised
        store_rows = [episode_row(trigger_id=TRIGGER, **{**row, "level": level})]
        import_episodes(database, codebook, RecordingRefits(load_settings({})), enumerate(store_rows, 2),
                        actor="bob", source="test")
    first, second = LedgerStore(database.engine).entries(kinds=["score"])
    assert first["payload"]["outcome"]["level"] == 1 and second["payload"]["outcome"]["level"] == 0
    assert second["payload"]["supersedes"] == first["seq"]
    assert first["payload"]["scores"]["model"]["brier"] == pytest.approx(
        0.7**2 + 0.8**2 + 0.05**2 + 0.05**2, abs=1e-6)
    assert ledger.list_forecasts(database)["resolved"] == 1
    assert ledger.verify(database).intact
