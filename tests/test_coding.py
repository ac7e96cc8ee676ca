"""Double coding through the store and the services (forecasting.store.codings,
forecasting.services.coding): two coders' files import, a second coding is not a revision, a
disagreement awaits adjudication and is held back from fits, the adjudicated value is what
the next fit reads, and a floor above the measured alpha fails a refit's gate naming the
field."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from fixtures_store import RecordingRefits
from helpers import csv_text, episode_row

from forecasting.coding.agreement import FLOOR_SETTING
from forecasting.domain.episodes import EpisodeValidationError
from forecasting.registry import ModelVersion
from forecasting.services import coding as coding_service
from forecasting.services.episodes import import_file
from forecasting.settings import load_settings
from forecasting.store.episodes import NotDoubleCodedError

TYPES = ("sigint", "humint", "geoint", "sources", "methods", "cyber")
# bob agrees with alice on every type but humint (level) and cyber (level and confidence)
ALICE = {t: 1 if t in ("humint", "sources") else 0 for t in TYPES}
BOB = ALICE | {"humint": 3, "cyber": 2}
KEY = ("2017-oval-office-disclosure", "ISR", "humint")


def _file(tmp_path: Path, coder: str, levels: dict, **overrides) -> Path:
    path = tmp_path / f"{coder}.csv"
    rows = [episode_row(intel_type=t, level=level, coder=coder,
                        **({"confidence": "low"} if coder == "bob" and t == "cyber" else {}),
                        **overrides) for t, level in levels.items()]
    path.write_text(csv_text(rows))
    return path


@pytest.fixture
def queue(settings):
    return RecordingRefits(settings)


@pytest.fixture
def coded(database, codebook, queue, tmp_path):
    """alice's file, then bob's file of the same six episodes."""
    first = import_file(database, codebook, queue, _file(tmp_path, "alice", ALICE),
                        actor="alice")
    second = import_file(database, codebook, queue, _file(tmp_path, "bob", BOB), actor="bob")
    return first, second


def test_two_coders_files_of_the_same_episodes_import_without_revising_them(
        coded, database, queue):
    first, second = coded
    assert first.summary.inserted == 6
    assert (second.summary.inserted, second.summary.revised, second.summary.coded) == (0, 0, 6)
    assert second.as_dict()["codings"] == 6 and second.refit is not None
    assert queue.requests == [("episodes", "alice"), ("episodes", "bob")]
    record = database.episodes.get(*KEY)
    assert record["revision"] == 1 and len(record["history"]) == 1
    assert record["coder"] == "alice" and record["level"] == 1  # the first accepted value


def test_the_same_coder_importing_again_is_a_revision_and_the_other_coder_is_unchanged(
        coded, database, codebook, queue, tmp_path):
    again = import_file(database, codebook, queue,
                        _file(tmp_path, "alice", ALICE | {"humint": 2}), actor="alice")
    assert (again.summary.revised, again.summary.coded, again.summary.unchanged) == (1, 0, 5)
    assert database.episodes.get(*KEY)["level"] == 2
    bob_again = import_file(database, codebook, queue, _file(tmp_path, "bob", BOB),
                            actor="bob")
    assert (bob_again.summary.coded, bob_again.summary.unchanged) == (0, 6)
    assert bob_again.refit is None  # nothing changed: no refit
    # alice's revision moved her coding too: the dispute is now 2 against 3
    [humint] = [d for d in coding_service.disagreements(database)["disagreements"]
                if d["intel_type"] == "humint"]
    assert humint["fields"] == {"level": {"alice": 2, "bob": 3}}


def test_a_disagreement_appears_for_adjudication_naming_fields_and_coders(coded, database):
    found = coding_service.disagreements(database)
    assert found["total"] == 2
    by_type = {d["intel_type"]: d for d in found["disagreements"]}
    assert by_type["humint"]["fields"] == {"level": {"alice": 1, "bob": 3}}
    assert by_type["cyber"]["fields"] == {"level": {"alice": 0, "bob": 2},
                                          "confidence": {"alice": "medium", "bob": "low"}}
    assert [c["coder"] for c in by_type["humint"]["codings"]] == ["alice", "bob"]


def test_an_adjudication_is_an_audited_revision_that_queues_a_refit(
        coded, database, codebook, queue):
    queue.requests.clear()
    result = coding_service.adjudicate(database, codebook, queue, KEY, {"level": "3"},
                                       "two sources say the stream was suspended", actor="carol")
    assert result["revision"] == 2 and result["changed"] == ["level", "coder", "coded_at"]
    assert queue.requests == [("episodes", "carol")]
    record = database.episodes.get(*KEY)
    assert (record["level"], record["coder"], record["revision"]) == (3, "carol", 2)
    assert record["history"][-1]["changed_by"] == "carol"
    assert record["history"][-1]["changed_fields"]["level"] == {"from": 1, "to": 3}
    [entry] = [e for e in database.audit_entries() if e["action"] == "adjudicate"]
    assert entry["actor"] == "carol"
    assert entry["detail"]["reason"] == "two sources say the stream was suspended"
    remaining = coding_service.disagreements(database)["disagreements"]
    assert [d["intel_type"] for d in remaining] == ["cyber"]
    [adjudication] = database.codings.adjudications(record["id"])
    assert adjudication["values"]["level"] == 3 and adjudication["revision"] == 2


def test_backtests_and_baselines_read_the_episodes_a_fit_is_fed(coded, database, codebook, queue):
    def modelled():
        return set(coding_service.modelled_episodes(database)["intel_type"])

    assert len(database.episodes.frame()) == 6
    assert modelled() == set(ALICE) - {"humint", "cyber"}  # the two disputed held back
    coding_service.adjudicate(database, codebook, queue, KEY, {"level": 3}, "two sources",
                              actor="carol")
    frame = coding_service.modelled_episodes(database)
    assert modelled() == set(ALICE) - {"cyber"}
    assert frame.set_index("intel_type").loc["humint", "level"] == 3


def test_a_later_coding_that_still_disagrees_reopens_an_adjudicated_episode(
        coded, database, codebook, queue, tmp_path):
    coding_service.adjudicate(database, codebook, queue, KEY, {"level": 3}, "settled",
                              actor="carol")
    import_file(database, codebook, queue, _file(tmp_path, "bob", BOB | {"humint": 2}),
                actor="bob")
    [humint] = [d for d in coding_service.disagreements(database)["disagreements"]
                if d["intel_type"] == "humint"]
    assert humint["last_adjudication"]["adjudicator"] == "carol"


def test_the_adjudicator_revising_the_final_value_is_no_coding_of_the_episode(
        coded, database, codebook, queue, tmp_path):
    coding_service.adjudicate(database, codebook, queue, KEY, {"level": 3}, "settled",
                              actor="carol")
    path = tmp_path / "carol.csv"
    path.write_text(csv_text([episode_row(intel_type="humint", level=2, coder="carol")]))
    again = import_file(database, codebook, queue, path, actor="carol")
    assert (again.summary.revised, again.summary.coded) == (1, 0)
    record = database.episodes.get(*KEY)
    assert record["level"] == 2 and record["coding"]["status"] == "adjudicated"
    assert [c["coder"] for c in record["coding"]["codings"]] == ["alice", "bob"]


def test_adjudication_refuses_what_it_cannot_record(coded, database, codebook, queue):
    with pytest.raises(coding_service.AdjudicationError, match="values.sources: not a coded"):
        coding_service.adjudicate(database, codebook, queue, KEY, {"sources": "x"}, "r",
                                  actor="carol")
    with pytest.raises(coding_service.AdjudicationError, match="reason: is required"):
        coding_service.adjudicate(database, codebook, queue, KEY, {"level": 2}, "  ",
                                  actor="carol")
    with pytest.raises(coding_service.AdjudicationError, match="reason: contains the control"):
        coding_service.adjudicate(database, codebook, queue, KEY, {"level": 2}, "a\x00b",
                                  actor="carol")
    with pytest.raises(coding_service.AdjudicationError, match="values: give the final"):
        coding_service.adjudicate(database, codebook, queue, KEY, {}, "r", actor="carol")
    with pytest.raises(EpisodeValidationError, match="level: must be a whole number 0-3"):
        coding_service.adjudicate(database, codebook, queue, KEY, {"level": 7}, "r",
                                  actor="carol")


def test_a_single_coded_episode_is_not_adjudicated(database, codebook, queue, tmp_path):
    import_file(database, codebook, queue, _file(tmp_path, "alice", ALICE), actor="alice")
    with pytest.raises(NotDoubleCodedError, match="has 0 coding"):
        coding_service.adjudicate(database, codebook, queue, KEY, {"level": 2}, "r",
                                  actor="carol")
    assert database.episodes.get(*KEY)["revision"] == 1


# --- what a fit is fed, and the floor ------------------------------------------------------
@dataclass
class _FakeResult:
    frame: object

    def metadata(self):
        return {"episodes": len(self.frame), "data_hash": "d", "priors_hash": "p",
                "model_config": {}, "sampler": {}, "verdict": "pass", "reasons": []}

    idata = None


class _FakeRegistry:
    def save(self, idata, metadata):
        self.saved = metadata
        return ModelVersion(version="v", path=Path("."), metadata=metadata)


@pytest.fixture
def fit(monkeypatch, database, codebook, settings):
    """fit_and_register with the sampler stubbed: returns (frame fed, saved metadata)."""
    import forecasting.model.fitting as fitting
    from forecasting.services.fits import fit_and_register

    fed = {}

    def fake_fit(frame, *args, **kwargs):
        fed["frame"] = frame
        return _FakeResult(frame)

    monkeypatch.setattr(fitting, "fit_and_diagnose", fake_fit)

    def run(floor: str = ""):
        registry = _FakeRegistry()
        with_floor = replace(settings, coding_alpha_floor=tuple(
            (k, float(v)) for k, v in (e.split("=") for e in floor.split(",") if e)))
        outcome = fit_and_register(with_floor, database, registry, codebook, promote=False)
        return fed["frame"], outcome.version

    return run


def _level_fed(frame, database, intel_type):
    """The level the fit was fed for this type's episode; None if it was held back."""
    episode_id = database.episodes.get(KEY[0], KEY[1], intel_type)["id"]
    match = frame.loc[frame["id"] == episode_id, "level"]
    return None if match.empty else int(match.iloc[0])


def test_disputed_episodes_are_held_back_and_the_fit_records_how_each_was_coded(
        coded, database, fit):
    frame, version = fit()
    assert len(frame) == 4 and _level_fed(frame, database, "humint") is None
    coding = version.metadata["coding"]
    assert coding["counts"] == {"single": 0, "agreed": 4, "adjudicated": 0, "disputed": 2}
    assert len(coding["held_back"]) == 2 and coding["fed"] == 4
    assert coding["reliability"]["level"]["episodes"] == 6


def test_once_adjudicated_the_refit_uses_the_adjudicated_value(
        coded, database, codebook, queue, fit):
    coding_service.adjudicate(database, codebook, queue, KEY, {"level": 3}, "settled",
                              actor="carol")
    frame, version = fit()
    assert len(frame) == 5 and _level_fed(frame, database, "humint") == 3
    assert version.metadata["coding"]["adjudicated"] == [database.episodes.get(*KEY)["id"]]


def test_a_floor_above_the_measured_alpha_makes_the_refits_gate_fail_naming_the_field(
        coded, database, fit):
    measured = coding_service.reliability_report(database, load_settings({}), samples=200)
    alpha = measured["fields"]["level"]["alpha"]
    assert alpha < 0.95
    _, version = fit("level=0.95")
    assert version.verdict == "fail"
    [reason] = version.reasons
    assert reason.startswith(f"coding level: Krippendorff's alpha {alpha:.3f}")
    assert "needed >= 0.95" in reason and FLOOR_SETTING in reason
    _, passing = fit(f"level={alpha - 0.01:.3f}")
    assert passing.verdict == "pass" and passing.metadata["coding"]["floor"]["passed"]


def test_a_floor_without_any_double_coding_is_not_measured_and_does_not_fail(
        database, codebook, queue, tmp_path, fit):
    import_file(database, codebook, queue, _file(tmp_path, "alice", ALICE), actor="alice")
    _, version = fit("level=0.8")
    assert version.verdict == "pass"
    assert "not measured" in version.metadata["coding"]["floor"]["notes"][0]


def test_the_reliability_report_says_how_the_episodes_are_coded_and_checks_the_floor(
        coded, database):
    settings = load_settings({"FORECAST_CODING_ALPHA_FLOOR": "level=0.99"})
    report = coding_service.reliability_report(database, settings, samples=200)
    assert report["coverage"] == {"single": 0, "agreed": 4, "adjudicated": 0, "disputed": 2}
    assert report["coders"] == ["alice", "bob"] and report["episodes"] == 6
    assert report["floor"]["passed"] is False and "coding level" in report["floor"]["failures"][0]
    assert report["fields"]["level"]["ci95"] is not None


def test_a_coding_makes_the_current_model_stale(coded, database, codebook, queue, tmp_path):
    from forecasting.refits import model_status

    class _Current:
        version, fitted_at = "v", "t"
        metadata = {"store_revision": database.episodes.latest_revision_id(),
                    "coding_revision": database.codings.latest_change_id()}

    class _Registry:
        def current_or_none(self):
            return _Current

    assert model_status(database, _Registry())["stale"] is False
    import_file(database, codebook, queue, _file(tmp_path, "bob", BOB | {"sigint": 2}),
                actor="bob")
    status = model_status(database, _Registry())
    assert status["stale"] and "codings recorded since the fit" in status["stale_reasons"]


def test_a_second_coder_sample_is_stratified_and_blank(coded, database):
    rows = coding_service.second_coder_sample(database, 3, seed=1)
    assert len(rows) == 3
    for row in rows:
        assert row["level"] == row["severity"] == row["coder"] == row["confidence"] == ""
        assert row["trigger_id"] == KEY[0] and row["sources"]
