"""Horizon forecasts: the pure combination (forecasting.serving.horizons), the service, the API
route and its plot, and `forecast query ... --horizon`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_api import cli_on

from forecasting.model.trigger_rates import arrival_id, half_life
from forecasting.registry import Registry
from forecasting.services.horizons import arrival_model, horizon
from forecasting.serving.forecasts import ScenarioError
from forecasting.serving.horizons import (
    NoArrivalModelError,
    check_months,
    combine,
    horizon_forecast,
    within,
)


@pytest.fixture(scope="module")
def arrivals(fitted_version):
    return arrival_model(Registry(fitted_version.path.parent), fitted_version.version)


# -- the arithmetic ------------------------------------------------------------------------


def test_thinning_gives_one_minus_exp_of_the_restriction_hazard():
    # two types, one severity, one alignment, two draws
    p_any = np.array([0.5, 0.2])[:, None, None, None] * np.ones((2, 1, 1, 2))
    rate = np.array([[0.1, 0.2], [0.3, 0.3]])  # per month
    parts = combine(p_any, rate, np.ones((2, 1, 2)), np.ones((1, 2)), np.array([0.5, 1.0]))
    np.testing.assert_allclose(parts["at_stake"], [[0.05, 0.2], [0.15, 0.3]])
    hazard = parts["hazard"].sum(axis=0)
    np.testing.assert_allclose(hazard, [0.05 * 0.5 + 0.15 * 0.2, 0.2 * 0.5 + 0.3 * 0.2])
    curve = within(hazard, [1, 6, 36])
    np.testing.assert_allclose(curve[1], 1 - np.exp(-6 * hazard))
    assert (np.diff(curve, axis=0) > 0).all()  # later horizons are likelier


def test_months_must_be_whole_numbers_from_1_to_36():
    assert check_months(None) == list(range(1, 37))
    assert check_months(6) == [6]
    for bad in (0, 37, 2.5, True):
        with pytest.raises(ScenarioError, match="months: must be a whole number of months 1-36"):
            check_months(bad)


# -- against the session's fit -------------------------------------------------------------


def test_the_curve_rises_with_the_horizon_and_carries_both_parts(fitted_engine, arrivals):
    answer = horizon_forecast(fitted_engine, arrivals, "ISR", "humint")
    curve = answer["curve"]
    assert [c["months"] for c in curve] == list(range(1, 37))
    means = [c["any_restriction"]["mean"] for c in curve]
    assert all(b >= a for a, b in zip(means, means[1:], strict=False)) and means[-1] > means[0]
    for point in curve:
        lo, hi = point["any_restriction"]["ci90"]
        assert 0 <= lo <= point["any_restriction"]["median"] <= hi <= 1
    # expected triggers grow linearly with H
    e1, e36 = curve[0]["expected_triggers"]["mean"], curve[-1]["expected_triggers"]["mean"]
    assert e36 == pytest.approx(36 * e1, rel=0.01)
    assert set(answer) == {"partner", "intel_type", "scenario", "curve", "per_trigger",
                           "arrivals", "model"}
    assert answer["model"]["version"] == fitted_engine.version
    # P(within H) never exceeds what every expected trigger restricting would give
    p = answer["per_trigger"]["any_restriction"]["mean"]
    assert means[-1] <= 1 - np.exp(-e36 * 1.0) + 1e-3 and 0 < p < 1


def test_one_kind_of_trigger_gives_the_forecast_per_trigger_of_that_scenario(fitted_engine,
                                                                            arrivals):
    scenario = {"trigger_type": "disclosure_incident", "severity": 3, "alignment": 2}
    answer = horizon_forecast(fitted_engine, arrivals, "ISR", "humint", months=12, **scenario)
    forecast = fitted_engine.forecast("ISR", "humint", **scenario)
    assert answer["per_trigger"]["any_restriction"]["mean"] == pytest.approx(
        forecast["any_restriction"]["mean"], abs=2e-4)
    assert list(answer["arrivals"]["by_trigger_type"]) == ["disclosure_incident"]
    everything = horizon_forecast(fitted_engine, arrivals, "ISR", "humint", months=12)
    assert (answer["curve"][0]["expected_triggers"]["mean"]
            < everything["curve"][0]["expected_triggers"]["mean"])


def test_one_kind_of_trigger_counts_the_partners_exposure_to_that_kind(fitted_engine,
                                                                      arrivals):
    by_type = arrivals["exposure_by_type"].sel(partner="GBR").mean("arrival_draw")
    for kind in ("disclosure_incident", "policy_divergence"):
        answer = horizon_forecast(fitted_engine, arrivals, "GBR", "sigint", months=12,
                                  trigger_type=kind)
        assert answer["arrivals"]["exposure"]["mean"] == pytest.approx(
            float(by_type.sel(trigger_type=kind)), abs=0.01)
        assert answer["arrivals"]["by_trigger_type"][kind]["exposure"] == \
            answer["arrivals"]["exposure"]


def test_every_answer_names_the_arrival_model_it_came_from(fitted_engine, arrivals):
    answer = horizon_forecast(fitted_engine, arrivals, "ISR", "humint", months=6)
    stamp = answer["model"]["arrival_model"]
    assert stamp == {"id": arrival_id(arrivals), "half_life_years": half_life(arrivals),
                     "exposure": "partner x trigger type, pooled toward the partner's"}
    other = arrivals.copy()
    other.attrs = {**arrivals.attrs, "arrival_id": "0123456789ab"}
    again = horizon_forecast(fitted_engine, other, "ISR", "humint", months=6)
    assert again["model"]["version"] == answer["model"]["version"]
    assert again["model"]["arrival_model"]["id"] != stamp["id"]


def test_a_partner_rarely_at_stake_is_less_likely_to_restrict_within_a_year(fitted_engine,
                                                                           arrivals):
    exposure = arrivals["exposure"].mean("arrival_draw").to_series()
    often, rarely = exposure.idxmax(), exposure.idxmin()
    p_often = horizon_forecast(fitted_engine, arrivals, often, "humint", months=12)
    p_rarely = horizon_forecast(fitted_engine, arrivals, rarely, "humint", months=12)
    assert (p_often["curve"][0]["expected_triggers"]["mean"]
            > 2 * p_rarely["curve"][0]["expected_triggers"]["mean"])


def test_a_version_without_an_arrival_model_is_refused_with_a_refit_hint(fitted_engine,
                                                                        fitted_version,
                                                                        tmp_path):
    from fixtures_registry import derive, fit_metadata

    registry = Registry(tmp_path / "registry")
    source = Registry(fitted_version.path.parent)
    old = registry.save(*derive(source.load_posterior(fitted_version.version,
                                                      groups=["posterior"]),
                                fit_metadata(fitted_version), data_hash="before-issue-17"))
    engine = type(fitted_engine).from_version(registry, old.version, fitted_engine.codebook)
    with pytest.raises(NoArrivalModelError, match="no trigger arrival model.*refit"):
        horizon(engine, registry, "ISR", "humint")


# -- the API and the command ---------------------------------------------------------------


def test_the_api_serves_the_curve_and_its_plot(client, served_model):
    response = client.get("/v1/forecasts/horizon?partner=ISR&intel_type=humint")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert len(body["curve"]) == 36 and body["scenario"] == {
        "trigger_type": None, "severity": None, "alignment": None}
    assert response.headers["X-Model-Version"] == served_model.version
    six = client.get("/v1/forecasts/horizon?partner=ISR&intel_type=humint&months=6"
                     "&trigger_type=legal_case").get_json()
    assert [c["months"] for c in six["curve"]] == [6]
    assert list(six["arrivals"]["by_trigger_type"]) == ["legal_case"]
    png = client.get("/v1/forecasts/horizon.png?partner=ISR&intel_type=humint")
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_api_etag_changes_with_the_arrival_model(client, served_model, monkeypatch):
    """One version id may come with different arrival settings (a fresh registry, new code):
    a client's cached answer must not be confirmed by a 304 then."""
    import api.routes.horizons as route

    url = "/v1/forecasts/horizon?partner=ISR&intel_type=humint&months=6"
    first = client.get(url)
    tag = first.headers["ETag"]
    assert first.get_json()["model"]["arrival_model"]["id"] in tag
    assert client.get(url, headers={"If-None-Match": tag}).status_code == 304
    monkeypatch.setattr(route, "arrival_identity",
                        lambda registry, version: {"id": "0123456789ab"})
    changed = client.get(url, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag


@pytest.mark.parametrize("query, field", [
    ("partner=XXX&intel_type=humint", "partner"),
    ("partner=ISR&intel_type=humint&months=37", "months"),
    ("partner=ISR&intel_type=humint&severity=4", "severity"),
])
def test_the_api_names_the_field_of_a_bad_horizon_query(client, served_model, query, field):
    response = client.get(f"/v1/forecasts/horizon?{query}")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert field in json.dumps(response.get_json())


def test_the_api_answers_409_for_a_version_fitted_before_arrival_models(client, api_settings,
                                                                        second_model):
    Registry(api_settings.registry_path).promote(second_model.version)
    response = client.get("/v1/forecasts/horizon?partner=ISR&intel_type=humint")
    assert response.status_code == 409
    assert "refit" in response.get_json()["detail"]


def test_query_with_a_horizon_answers_from_the_shell(api_settings, served_model):
    forecast = cli_on(api_settings)
    result = forecast("query", "ISR", "humint", "--horizon", 6, "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert [c["months"] for c in answer["curve"]] == [6]
    assert answer["scenario"] == {"trigger_type": None, "severity": None, "alignment": None}
    shown = forecast("query", "ISR", "humint", "--horizon", 6, "--severity", 3)
    assert shown.exit_code == 0 and "within 6 months" in shown.output
    assert "severity 3" in shown.output



def test_the_horizon_code_uses_only_the_engines_public_face():
    """forecasting.serving.horizons reads the engine through its public methods, so that the
    engine's internals can change without breaking horizons."""
    import ast
    import inspect

    import forecasting.serving.horizons as horizons

    tree = ast.parse(inspect.getsource(horizons))
    private = sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                      and isinstance(node.value, ast.Name) and node.value.id == "engine"
                      and node.attr.startswith("_")})
    imported = sorted(alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                      and node.module == "forecasting.serving.forecasts"
                      for alias in node.names if alias.name.startswith("_"))
    assert (private, imported) == ([], [])


# -- the end-to-end backtest (slow: a restriction model fitted per origin) -------------------


@pytest.mark.slow
def test_the_horizon_backtest_scores_every_cell_against_what_was_coded_after_its_origin(
        codebook, default_priors):
    import dataclasses

    import pandas as pd

    from forecasting.evaluation.backtest import BACKTEST_SAMPLER
    from forecasting.evaluation.trigger_backtest import (
        CLIMATOLOGY,
        MODEL,
        run_horizon_backtest,
        summarise_horizon_backtest,
    )
    from forecasting.settings import DEFAULT_DATA_DIR

    episodes = pd.read_csv(DEFAULT_DATA_DIR / "episodes.csv")
    sampler = dataclasses.replace(BACKTEST_SAMPLER, chains=2, draws=150, tune=150)
    table = run_horizon_backtest(episodes, codebook, default_priors, step_months=48,
                                 horizons=(12,), sampler=sampler)
    cells = len(codebook.partner_codes) * len(codebook.intel_type_codes)
    assert (table.groupby("origin").size() == cells).all()
    # the outcome is what was coded: a restriction of the cell on a trigger in the window
    # a trigger is dated by its earliest episode
    dates = pd.to_datetime(episodes["trigger_date"]).groupby(episodes["trigger_id"]).transform("min")
    for origin, part in table.groupby("origin"):
        start = pd.Timestamp(origin)
        window = episodes[(dates >= start) & (dates < start + pd.DateOffset(months=12))]
        hit = {tuple(x) for x in window.loc[window["level"] >= 1,
                                            ["partner", "intel_type"]].to_numpy()}
        assert set(map(tuple, part.loc[part["observed"] == 1,
                                       ["partner", "intel_type"]].to_numpy())) == hit
    assert ((table["lo"] <= table[MODEL]) & (table[MODEL] <= table["hi"])).all()
    assert table[[MODEL, CLIMATOLOGY]].gt(0).all().all()
    report = summarise_horizon_backtest(table, n_boot=200)["horizons"]["12"]
    assert report["restricted"] == int(table["observed"].sum())
    assert sum(b["cases"] for b in report["reliability"]) == len(table)
    assert 0 <= report["count_coverage90"] <= 1
