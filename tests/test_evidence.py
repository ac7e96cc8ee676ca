"""Evidence: the coded episodes a forecast rests on, closest first, counted in full."""

import pandas as pd
import pytest
from helpers import episode_row

from forecasting.domain.codebook import UnknownCodeError
from forecasting.domain.episodes import validate_episodes
from forecasting.services.forecasts import episodes_as_fitted, forecast_evidence
from forecasting.serving.evidence import evidence


def _frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame([episode_row(**r) for r in rows]).astype(
        {"severity": int, "alignment": int, "level": int})


EPISODES = _frame(
    {"trigger_id": "a", "trigger_date": "2017-05-15", "partner": "ISR", "intel_type": "humint",
     "level": 2},
    {"trigger_id": "b", "trigger_date": "2020-01-03", "partner": "ISR", "intel_type": "humint",
     "level": 0},
    {"trigger_id": "b", "trigger_date": "2020-01-03", "partner": "ISR", "intel_type": "sigint",
     "level": 1},
    {"trigger_id": "b", "trigger_date": "2020-01-03", "partner": "SAU", "intel_type": "humint",
     "level": 0},
    {"trigger_id": "c", "trigger_date": "2021-06-01", "partner": "SAU", "intel_type": "humint",
     "level": 3},
    {"trigger_id": "b", "trigger_date": "2020-01-03", "partner": "GBR", "intel_type": "humint",
     "level": 3},  # another bloc: not evidence for ISR
)


def test_the_cells_own_episodes_come_first_then_the_partners_then_the_blocs(codebook):
    e = evidence(EPISODES, codebook, "ISR", "humint")
    assert e["direct"] is True
    assert e["counts"] == {"same_partner_and_type": 2, "same_partner_other_types": 1,
                           "same_bloc_and_type": 2}
    assert e["restricted"] == {"same_partner_and_type": 1, "same_partner_other_types": 1,
                               "same_bloc_and_type": 1}
    # closest relation first, most recent first within it
    assert [(x["trigger_id"], x["partner"], x["intel_type"]) for x in e["episodes"]] == [
        ("b", "ISR", "humint"), ("a", "ISR", "humint"), ("b", "ISR", "sigint"),
        ("c", "SAU", "humint"), ("b", "SAU", "humint")]
    first = e["episodes"][0]
    assert first["relation"] == "same partner and type"
    assert first["sources"] == ["The Washington Post, 2017-05-15",
                                "The New York Times, 2017-05-16"]
    assert first["trigger_date"] == "2020-01-03" and first["confidence"] == "medium"
    assert "2 coded episode(s) of ISR x humint (1 with a restriction)" in e["note"]


def test_the_limit_bounds_the_list_but_never_the_counts(codebook):
    e = evidence(EPISODES, codebook, "ISR", "humint", limit=1)
    assert [x["relation"] for x in e["episodes"]] == [
        "same partner and type", "same partner, other types", "same bloc and type, other partners"]
    assert e["counts"]["same_partner_and_type"] == 2
    assert evidence(EPISODES, codebook, "ISR", "humint", limit=0)["episodes"] == []


def test_a_forecast_without_direct_evidence_says_so(codebook):
    partner_only = evidence(EPISODES, codebook, "ISR", "cyber")
    assert partner_only["direct"] is False
    assert partner_only["note"].startswith("No direct evidence: no episode of ISR x cyber")
    unseen = evidence(EPISODES, codebook, "JOR", "humint")
    assert unseen["direct"] is False
    assert "no episode of JOR is coded at all" in unseen["note"]
    assert "drawn from its bloc (middle_east)" in unseen["note"]
    assert unseen["counts"]["same_bloc_and_type"] == 4  # ISR's and SAU's humint
    empty = evidence(EPISODES.iloc[:0], codebook, "ISR", "humint")
    assert empty["direct"] is False and empty["episodes"] == []


def test_unknown_codes_are_refused_naming_the_field(codebook):
    with pytest.raises(UnknownCodeError, match="partner"):
        evidence(EPISODES, codebook, "XXX", "humint")
    with pytest.raises(UnknownCodeError, match="intel_type"):
        evidence(EPISODES, codebook, "ISR", "nothing")


class _Engine:
    """What forecast_evidence reads of a forecast engine."""

    def __init__(self, store_revision):
        self.version, self.store_revision = "v1", store_revision


def _import(database, codebook, rows):
    database.episodes.import_episodes(
        validate_episodes(list(enumerate([episode_row(**r) for r in rows], 2)), codebook),
        actor="test", codebook_version=codebook.version)


def test_evidence_is_read_as_the_served_version_was_fitted(database, codebook):
    _import(database, codebook, [{"intel_type": "humint", "level": 0},
                                 {"intel_type": "sigint", "level": 0}])
    fitted = database.episodes.latest_revision_id()
    # after the fit: one episode revised, one coded
    _import(database, codebook, [{"intel_type": "humint", "level": 3},
                                 {"intel_type": "cyber", "level": 1}])
    frame = episodes_as_fitted(database, fitted, ["ISR"])
    assert sorted(zip(frame["intel_type"], frame["level"], strict=True)) == [
        ("humint", 0), ("sigint", 0)]
    e = forecast_evidence(_Engine(fitted), database, codebook, "ISR", "humint")
    assert [x["level"] for x in e["episodes"] if x["intel_type"] == "humint"] == [0]
    assert e["counts"]["same_partner_other_types"] == 1
    assert e["store"]["as_fitted"] is True and e["store"]["revision"] == fitted
    assert e["store"]["changed_since"] == 2
    assert "2 episode(s) of these partners were coded or revised since" in e["store"]["note"]
    now = forecast_evidence(_Engine(None), database, codebook, "ISR", "humint")
    assert now["store"]["as_fitted"] is False
    assert [x["level"] for x in now["episodes"] if x["intel_type"] == "humint"] == [3]
    assert now["counts"]["same_partner_other_types"] == 2
