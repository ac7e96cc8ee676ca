"""Live-event forecasts (forecasting.services.forecasts) on the session's real fit.

The trigger's coded episodes are read from the store as they are now; the forecast conditions
on every one of them but the queried cell's own, under the scenario the trigger is coded with.
"""

import shutil

import pytest
from helpers import episode_row

from forecasting.services.episodes import store_episodes
from forecasting.services.errors import classify, field_errors
from forecasting.services.forecasts import (
    ECHOED_FIELDS,
    InconsistentTriggerError,
    UnknownTriggerError,
    coded_trigger,
    live_forecast,
    refuse_scenario,
)
from forecasting.serving.forecasts import ScenarioError
from forecasting.settings import load_settings
from forecasting.store import connect

LIVE = "2026-live-event"  # a trigger coded after the fit, in the tests below
SCENARIO = {"trigger_type": "disclosure_incident", "severity": 2, "alignment": 1}
TYPES = ["sigint", "humint", "geoint", "sources", "methods", "cyber", "ct", "military"]


@pytest.fixture
def database(fitted_instance, tmp_path):
    """A writable copy of the session's fitted instance: its database holds the fitted data."""
    folder = tmp_path / "instance"
    shutil.copytree(fitted_instance.settings.instance_path, folder)
    database = connect(load_settings({"FORECAST_INSTANCE": str(folder)}).database_url)
    yield database
    database.dispose()


def code(database, codebook, *rows):
    """Store episodes of the live trigger (its scenario unless a row says otherwise)."""
    full = [episode_row(trigger_id=LIVE, trigger_date="2026-11-20", coded_at="2026-11-25",
                        **{**SCENARIO, **row}) for row in rows]
    store_episodes(database, codebook, enumerate(full, 2), actor="test", source="test")


def _sim_trigger(seed_like_data):
    """A simulated trigger of the fitted data with several coded partners."""
    episodes = seed_like_data[0]
    partners = episodes.groupby("trigger_id")["partner"].nunique()
    trigger_id = partners.idxmax()
    return trigger_id, episodes[episodes["trigger_id"] == trigger_id]


def test_a_trigger_is_read_with_its_coded_scenario_and_every_episode(
        database, codebook, seed_like_data):
    trigger_id, rows = _sim_trigger(seed_like_data)
    trigger = coded_trigger(database, codebook, trigger_id)
    first = rows.iloc[0]
    assert trigger.trigger_id == trigger_id
    assert trigger.scenario.as_dict() == {"trigger_type": first["trigger_type"],
                                          "severity": int(first["severity"]),
                                          "alignment": int(first["alignment"])}
    assert sorted((e["partner"], e["intel_type"], e["level"]) for e in trigger.episodes) == \
        sorted(zip(rows["partner"], rows["intel_type"], rows["level"].astype(int), strict=True))
    assert all(tuple(e) == ECHOED_FIELDS for e in trigger.episodes)
    # in codebook order, so that a forecaster reads one partner's reaction together
    order = [(codebook.partner_codes.index(e["partner"]),
              codebook.intel_type_codes.index(e["intel_type"])) for e in trigger.episodes]
    assert order == sorted(order)


def test_the_answer_conditions_on_the_triggers_other_episodes_and_reports_its_own(
        database, codebook, seed_like_data, fitted_engine):
    trigger_id, rows = _sim_trigger(seed_like_data)
    own = rows.iloc[0]
    answer = live_forecast(fitted_engine, database, codebook, own["partner"], own["intel_type"],
                           trigger_id)
    assert answer["trigger_id"] == trigger_id
    assert answer["observed_level"] == int(own["level"])
    others = rows[(rows["partner"] != own["partner"]) | (rows["intel_type"] != own["intel_type"])]
    assert sorted((e["partner"], e["intel_type"]) for e in answer["conditioned_on"]) == \
        sorted(zip(others["partner"], others["intel_type"], strict=True))
    assert answer["scenario"] == coded_trigger(database, codebook, trigger_id).scenario.as_dict()
    assert 0 < answer["draws_used"] <= fitted_engine.n_draws
    any_ = answer["any_restriction"]
    assert 0 <= any_["ci90"][0] <= any_["median"] <= any_["ci90"][1] <= 1
    assert sum(answer["levels"][k]["mean"] for k in "0123") == pytest.approx(1, abs=1e-3)


def test_restrictions_coded_after_a_trigger_raise_its_other_partners_forecast(
        database, codebook, fitted_engine, fitted_tree):
    """Saudi Arabia after an event Jordan shrugged off, then after its bloc mates restricted."""
    code(database, codebook, {"partner": "JOR", "intel_type": "humint", "level": 0})
    before = live_forecast(fitted_engine, database, codebook, "SAU", "humint", LIVE)
    assert [(e["partner"], e["level"]) for e in before["conditioned_on"]] == [("JOR", 0)]
    assert before["observed_level"] is None
    code(database, codebook, *({"partner": p, "intel_type": t, "level": 3}
                               for p in ("ISR", "ARE", "TUR") for t in TYPES))
    after = live_forecast(fitted_engine, database, codebook, "SAU", "humint", LIVE)
    assert len(after["conditioned_on"]) == 1 + 3 * len(TYPES)
    new_trigger = fitted_engine.forecast("SAU", "humint", **SCENARIO)
    sigma_event = float(fitted_tree["posterior"]["sigma_event"].median())
    context = (before["any_restriction"], after["any_restriction"], sigma_event)
    # per draw, level-3 reactions make larger event effects likelier: the forecast rises (by
    # how much depends on sigma_event: about 1.7 in the session's fit, 0.16 -> 0.97 here)
    assert after["any_restriction"]["mean"] > before["any_restriction"]["mean"], context
    # and the conditioned event is graver than a new trigger of the same kind
    assert sigma_event > 0.3, f"premise: events vary in the session's fit ({sigma_event})"
    assert after["any_restriction"]["mean"] > new_trigger["any_restriction"]["mean"] + 0.1, context
    assert after["scenario"] == before["scenario"] == new_trigger["scenario"] == SCENARIO


def test_an_unknown_trigger_is_an_error_naming_trigger_id(database, codebook, fitted_engine):
    with pytest.raises(UnknownTriggerError, match="trigger_id: no episode is coded") as caught:
        live_forecast(fitted_engine, database, codebook, "ISR", "humint", "no-such-trigger")
    assert classify(caught.value) == (404, "Unknown trigger")
    assert field_errors(caught.value)[0]["field"] == "trigger_id"


def test_a_trigger_coded_with_two_severities_is_a_conflict_naming_the_field(
        database, codebook, fitted_engine):
    code(database, codebook, {"partner": "JOR", "intel_type": "humint", "level": 0})
    code(database, codebook, {"partner": "ISR", "intel_type": "humint", "level": 1,
                              "severity": 3})
    with pytest.raises(InconsistentTriggerError, match="severity: .* different values") as caught:
        live_forecast(fitted_engine, database, codebook, "SAU", "humint", LIVE)
    assert classify(caught.value) == (409, "Trigger coded inconsistently")


def test_codes_are_checked_before_the_trigger(database, codebook, fitted_engine):
    from forecasting.domain.codebook import UnknownCodeError

    with pytest.raises(UnknownCodeError, match="partner"):
        live_forecast(fitted_engine, database, codebook, "XXX", "humint", "no-such-trigger")


def test_a_scenario_given_with_a_trigger_is_refused_naming_it():
    refuse_scenario(["partner", "intel_type", "trigger_id"])
    with pytest.raises(ScenarioError, match="^severity: ") as caught:
        refuse_scenario({"partner", "severity", "trigger_id"})
    assert caught.value.field == "severity"
    with pytest.raises(ScenarioError, match="^alignment: "):  # any iterable, once
        refuse_scenario(name for name in ("partner", "alignment"))
