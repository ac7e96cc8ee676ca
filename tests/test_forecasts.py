"""The forecast engine: posterior draws -> level probabilities, grids and comparisons."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from fixtures_model import SMALL_SAMPLER
from scipy.special import expit

from forecasting.domain.codebook import UnknownCodeError
from forecasting.model.arithmetic import level_probabilities
from forecasting.serving.forecasts import (
    ForecastEngine,
    NotInModelError,
    Scenario,
    ScenarioError,
    summarise,
)

STATS_KEYS = {"mean", "median", "ci50", "ci90"}
# float32 draws and 4-decimal rounding
TOLERANCE = 2e-4


def reference_draws(tree, partner, intel_type, trigger_type="disclosure_incident", severity=2,
                    alignment=1):
    """P(any restriction) and P(level = k) per draw, straight from the model's equations: a new
    trigger's event and reaction effects integrated out by a far finer rule (80 nodes) than
    the engine's."""
    post = tree["posterior"].to_dataset().stack(sample=("chain", "draw"))
    eta = (post.pt_eff.sel(partner=partner, intel_type=intel_type)
           + post.trigger_eff.sel(trigger_type=trigger_type)
           + post.beta_severity * (severity - tree.attrs["severity_center"])
           + post.beta_alignment * (alignment - tree.attrs["alignment_center"])).values
    sd = np.sqrt(post.sigma_event.values ** 2 + post.sigma_reaction.values ** 2)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    levels = 0.0
    for node, weight in zip(nodes, weights / weights.sum(), strict=True):
        cdf = expit(post.cutpoints.values - (eta + sd * node))  # (3, S)
        levels = levels + weight * np.diff(
            np.vstack([np.zeros_like(eta), cdf, np.ones_like(eta)]), axis=0)
    return 1 - levels[0], levels


def assert_stats_match(stats, draws):
    q05, q25, q50, q75, q95 = np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95])
    expected = [draws.mean(), q50, q25, q75, q05, q95]
    got = [stats["mean"], stats["median"], *stats["ci50"], *stats["ci90"]]
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)


def test_a_forecast_has_exactly_the_contract_shape(fitted_engine, fitted_version):
    f = fitted_engine.forecast("ISR", "humint", "disclosure_incident", severity=3, alignment=2)
    assert set(f) == {"partner", "intel_type", "scenario", "any_restriction", "levels", "model"}
    assert f["partner"] == "ISR" and f["intel_type"] == "humint"
    assert f["scenario"] == {"trigger_type": "disclosure_incident", "severity": 3, "alignment": 2}
    assert set(f["any_restriction"]) == STATS_KEYS
    assert set(f["levels"]) == {"0", "1", "2", "3"}
    assert all(set(stats) == STATS_KEYS for stats in f["levels"].values())
    assert f["model"] == {"version": fitted_version.version,
                          "fitted_at": fitted_version.fitted_at, "episodes": 800,
                          "verdict": "pass"}
    for stats in [f["any_restriction"], *f["levels"].values()]:
        assert all(type(stats[k]) is float for k in ("mean", "median"))
        assert len(stats["ci50"]) == len(stats["ci90"]) == 2
        assert all(round(v, 4) == v for v in [stats["mean"], *stats["ci90"]])
    assert json.loads(json.dumps(f)) == f


def test_the_default_scenario_is_a_serious_disclosure_under_an_ambivalent_us(fitted_engine):
    assert Scenario().as_dict() == {"trigger_type": "disclosure_incident", "severity": 2,
                                    "alignment": 1}
    assert fitted_engine.forecast("GBR", "sigint")["scenario"] == Scenario().as_dict()


def test_forecasts_match_the_model_equations(fitted_engine, fitted_tree):
    f = fitted_engine.forecast("ISR", "humint", "leader_rhetoric", severity=0, alignment=3)
    any_draws, level_draws = reference_draws(fitted_tree, "ISR", "humint", "leader_rhetoric",
                                             0, 3)
    assert_stats_match(f["any_restriction"], any_draws)
    for k in range(4):
        assert_stats_match(f["levels"][str(k)], level_draws[k])


def test_level_probabilities_sum_to_one_in_every_draw():
    rng = np.random.default_rng(3)
    eta = rng.normal(0, 3, (5, 7, 400))
    cutpoints = np.sort(rng.normal(0, 2, (3, 400)), axis=0)
    probs = level_probabilities(eta, cutpoints, axis=-2)
    assert probs.shape == (5, 7, 4, 400)
    np.testing.assert_allclose(probs.sum(axis=-2), 1.0, atol=1e-12)
    assert (probs >= -1e-12).all()


def test_extreme_linear_predictors_give_limits_without_warnings():
    probs = level_probabilities(np.array([-800.0, 800.0]), np.zeros((3, 2)) + [[-1], [0], [1]],
                                axis=-2)
    np.testing.assert_allclose(probs[:, 0], [1, 0, 0, 0])
    np.testing.assert_allclose(probs[:, 1], [0, 0, 0, 1])


def test_summarise_equals_numpy_quantiles():
    x = np.random.default_rng(4).random((3, 1001))
    stats = summarise(x)
    np.testing.assert_allclose(stats[:, 0], x.mean(axis=-1))
    np.testing.assert_allclose(stats[:, 1:], np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95],
                                                         axis=-1).T)


def test_level_means_sum_to_one_and_any_is_one_minus_level_zero(fitted_engine):
    f = fitted_engine.forecast("JPN", "cyber")
    assert sum(s["mean"] for s in f["levels"].values()) == pytest.approx(1, abs=5e-4)
    zero, any_ = f["levels"]["0"], f["any_restriction"]
    assert any_["mean"] == pytest.approx(1 - zero["mean"], abs=1e-4)
    assert any_["ci90"] == pytest.approx([1 - zero["ci90"][1], 1 - zero["ci90"][0]], abs=1e-4)


@pytest.mark.parametrize("partner", ["GBR", "ISR", "PAK"])
def test_intervals_are_ordered_and_within_zero_and_one(fitted_engine, partner):
    f = fitted_engine.forecast(partner, "sources", "policy_divergence", severity=1, alignment=0)
    for s in [f["any_restriction"], *f["levels"].values()]:
        assert 0 <= s["ci90"][0] <= s["ci50"][0] <= s["median"] <= s["ci50"][1] <= s["ci90"][1] <= 1
        assert s["ci90"][0] <= s["mean"] <= s["ci90"][1]


def test_higher_severity_and_alignment_raise_the_risk_when_their_effects_are_positive(
        fitted_tree, fitted_engine, codebook):
    # the fit's draws with both slopes made positive in every draw (the simulated truth's
    # slopes are small beside its event effects, so the fitted ones straddle zero)
    posterior = fitted_tree["posterior"].to_dataset()
    posterior = posterior.assign(beta_severity=abs(posterior["beta_severity"]) + 0.3,
                                 beta_alignment=abs(posterior["beta_alignment"]) + 0.3)
    posterior.attrs.update(fitted_tree.attrs)
    engine = ForecastEngine(posterior, fitted_engine.model_info, codebook)
    by_severity = [engine.forecast("FRA", "methods", severity=s)["any_restriction"]["mean"]
                   for s in range(4)]
    by_alignment = [engine.forecast("FRA", "methods", alignment=a)["any_restriction"]["mean"]
                    for a in range(4)]
    assert by_severity == sorted(by_severity) and by_severity[0] < by_severity[-1]
    assert by_alignment == sorted(by_alignment) and by_alignment[0] < by_alignment[-1]
    top = engine.forecast("FRA", "methods", severity=3)["levels"]["3"]["mean"]
    assert top > engine.forecast("FRA", "methods", severity=0)["levels"]["3"]["mean"]


@pytest.mark.parametrize(("field", "kwargs"), [
    ("partner", {"partner": "XXX"}),
    ("intel_type", {"intel_type": "telepathy"}),
    ("trigger_type", {"trigger_type": "alien_invasion"}),
    ("partner", {"partner": ["ISR"]}),
])
def test_codes_outside_the_codebook_are_unknown_code_errors(fitted_engine, field, kwargs):
    query = {"partner": "ISR", "intel_type": "humint"} | kwargs
    with pytest.raises(UnknownCodeError, match=f"^{field}: unknown code") as info:
        fitted_engine.forecast(**query)
    assert info.value.field == field


@pytest.mark.parametrize(("field", "value", "message"), [
    ("severity", 4, "must be 0-3, got 4"),
    ("severity", -1, "must be 0-3"),
    ("severity", 2.0, "must be an integer 0-3"),
    ("severity", True, "must be an integer"),
    ("alignment", "1", "must be an integer"),
    ("alignment", None, "must be an integer"),
])
def test_scenario_values_out_of_range_or_not_integers_are_errors_naming_the_field(
        fitted_engine, field, value, message):
    with pytest.raises(ValueError, match=f"^{field}: {message}") as info:
        fitted_engine.forecast("ISR", "humint", **{field: value})
    assert isinstance(info.value, ScenarioError) and info.value.field == field


def test_numpy_integers_are_accepted_as_scenario_values(fitted_engine):
    f = fitted_engine.forecast("ISR", "humint", severity=np.int64(3), alignment=np.int8(0))
    assert json.loads(json.dumps(f))["scenario"] == {"trigger_type": "disclosure_incident",
                                                     "severity": 3, "alignment": 0}


@pytest.fixture(scope="module")
def engine_without_pakistan(codebook, fitted_tree, fitted_version):
    # the real fit without PAK's draws: a version fitted before PAK joined the codebook
    partners = [p for p in codebook.partner_codes if p != "PAK"]
    posterior = fitted_tree["posterior"].to_dataset().sel(partner=partners)
    tree = xr.DataTree.from_dict({"posterior": posterior})
    tree.attrs.update(fitted_tree.attrs)
    return ForecastEngine(tree, {**fitted_version.metadata, "version": "old0123"}, codebook)


def test_a_partner_added_after_the_fit_asks_for_a_refit(engine_without_pakistan):
    with pytest.raises(NotInModelError, match="'PAK' is in the codebook but not in model "
                                              "version old0123.*refit") as info:
        engine_without_pakistan.forecast("PAK", "humint")
    assert info.value.field == "partner" and info.value.version == "old0123"


def test_the_grid_leaves_out_partners_the_model_predates(engine_without_pakistan, codebook):
    assert engine_without_pakistan.missing_partners == ["PAK"]
    grid = engine_without_pakistan.grid()
    assert len(grid) == (len(codebook.partners) - 1) * len(codebook.intel_types)
    assert "PAK" not in {row["partner"] for row in grid}


def test_the_grid_covers_every_partner_and_type_sorted_by_risk(fitted_engine, codebook):
    grid = fitted_engine.grid({"trigger_type": "surveillance_revelation", "severity": 3})
    cells = {(row["partner"], row["intel_type"]) for row in grid}
    assert cells == {(p, t) for p in codebook.partner_codes for t in codebook.intel_type_codes}
    assert len(grid) == len(cells) == 23 * 8
    risks = [row["any_restriction"]["mean"] for row in grid]
    assert risks == sorted(risks, reverse=True)
    assert grid[0]["scenario"] == {"trigger_type": "surveillance_revelation", "severity": 3,
                                   "alignment": 1}
    one = fitted_engine.forecast(grid[5]["partner"], grid[5]["intel_type"],
                               "surveillance_revelation", severity=3)
    assert grid[5] == one


@pytest.mark.parametrize(("sort", "key"), [
    ("partner", lambda row: (row["partner"], row["intel_type"])),
    ("intel_type", lambda row: (row["intel_type"], row["partner"])),
])
def test_the_grid_sorts_by_partner_or_type(fitted_engine, sort, key):
    grid = fitted_engine.grid(Scenario(), sort=sort)
    assert [key(row) for row in grid] == sorted(key(row) for row in grid)


def test_the_grid_refuses_an_unknown_sort_or_scenario_field(fitted_engine):
    with pytest.raises(ValueError, match="Requested sort 'size' but it must be one of"):
        fitted_engine.grid(sort="size")
    with pytest.raises(ScenarioError, match="^sevrity: not a scenario field"):
        fitted_engine.grid({"sevrity": 2})


def test_a_batch_equals_the_single_forecasts(fitted_engine, fitted_tree, codebook):
    queries = [{"partner": "ISR", "intel_type": "humint", "severity": 3, "alignment": 2},
               {"partner": "GBR", "intel_type": "cyber"},
               {"partner": "UKR", "intel_type": "military", "trigger_type": "government_change"}]
    # without a cache, so that the batch is computed in one go, not read from single queries
    uncached = ForecastEngine(fitted_tree, fitted_engine.model_info, codebook, cache=False)
    assert uncached.batch(queries) == [fitted_engine.forecast(**q) for q in queries]
    assert fitted_engine.batch([]) == []


@pytest.mark.parametrize(("query", "error", "message"), [
    ({"partner": "XXX", "intel_type": "humint"}, UnknownCodeError, r"queries\[1\]\.partner"),
    ({"partner": "ISR", "intel_type": "humint", "severity": 9}, ScenarioError,
     r"queries\[1\]\.severity: must be 0-3"),
    ({"partner": "ISR"}, ScenarioError, r"queries\[1\]\.intel_type: is required"),
    ({"partner": "ISR", "intel_type": "humint", "colour": "red"}, ScenarioError,
     r"queries\[1\]\.colour: not a query field"),
])
def test_a_batch_names_the_bad_query_and_field(fitted_engine, query, error, message):
    with pytest.raises(error, match=message):
        fitted_engine.batch([{"partner": "GBR", "intel_type": "cyber"}, query])


def test_compare_gives_both_forecasts_and_the_per_draw_difference(fitted_engine, fitted_tree):
    a = {"trigger_type": "disclosure_incident", "severity": 0, "alignment": 0}
    b = {"trigger_type": "legal_case", "severity": 3, "alignment": 2}
    rows = fitted_engine.compare(["ISR", "GBR"], ["humint", "sigint", "cyber"], a, b)
    assert [(r["partner"], r["intel_type"]) for r in rows] == [
        (p, t) for p in ("ISR", "GBR") for t in ("humint", "sigint", "cyber")]
    for row in rows:
        assert set(row) == {"partner", "intel_type", "a", "b", "difference"}
        assert row["a"] == fitted_engine.forecast(row["partner"], row["intel_type"], **a)
        assert row["b"] == fitted_engine.forecast(row["partner"], row["intel_type"], **b)
        any_a, _ = reference_draws(fitted_tree, row["partner"], row["intel_type"], **a)
        any_b, _ = reference_draws(fitted_tree, row["partner"], row["intel_type"], **b)
        difference = any_b - any_a
        assert_stats_match(row["difference"], difference)
        assert row["difference"]["prob_positive"] == pytest.approx((difference > 0).mean(),
                                                                   abs=1e-3)


def test_compare_of_a_scenario_with_itself_is_zero(fitted_engine):
    [row] = fitted_engine.compare("JPN", "ct", None, Scenario())
    assert row["difference"] == {"mean": 0.0, "median": 0.0, "ci50": [0.0, 0.0],
                                 "ci90": [0.0, 0.0], "prob_positive": 0.0}


def test_compare_validates_codes_and_scenarios(fitted_engine):
    with pytest.raises(UnknownCodeError, match="^intel_type"):
        fitted_engine.compare("ISR", ["humint", "gossip"], None, None)
    with pytest.raises(ScenarioError, match="^severity"):
        fitted_engine.compare("ISR", "humint", None, {"severity": 7})


def test_a_warmed_up_grid_answers_single_queries_identically(fitted_tree, fitted_version,
                                                              codebook):
    engine = ForecastEngine(fitted_tree, fitted_version.metadata, codebook)
    uncached = ForecastEngine(fitted_tree, fitted_version.metadata, codebook, cache=False)
    scenarios = engine.all_scenarios()
    assert len(scenarios) == 6 * 4 * 4 and Scenario() in scenarios
    engine.warm_up([Scenario(severity=3), {"trigger_type": "legal_case"}])
    for query in [{"severity": 3}, {"trigger_type": "legal_case"}, {"alignment": 0}]:
        assert engine.forecast("NOR", "ct", **query) == uncached.forecast("NOR", "ct", **query)
    assert engine.batch([{"partner": "NOR", "intel_type": "ct", "severity": 3}]) == [
        uncached.forecast("NOR", "ct", severity=3)]


def test_cached_answers_are_not_shared_between_callers(fitted_engine):
    first = fitted_engine.forecast("DEU", "geoint")
    first["any_restriction"]["ci90"][0] = -1
    first["levels"]["0"]["mean"] = 99
    second = fitted_engine.forecast("DEU", "geoint")
    assert second["any_restriction"]["ci90"][0] >= 0 and second["levels"]["0"]["mean"] <= 1


def test_an_engine_loads_from_a_registry_version(registry_with_current, codebook):
    engine = ForecastEngine.from_version(registry_with_current, "current", codebook)
    current = registry_with_current.current()
    assert engine.version == current.version and engine.n_draws == 4 * SMALL_SAMPLER.draws
    assert engine.forecast("ISR", "humint")["model"] == {
        "version": current.version, "fitted_at": current.fitted_at, "episodes": 800,
        "verdict": "pass"}


def test_an_engine_accepts_the_posterior_dataset_alone(fitted_tree, fitted_engine, codebook):
    dataset = fitted_tree["posterior"].to_dataset()
    dataset.attrs.update(fitted_tree.attrs)
    engine = ForecastEngine(dataset, fitted_engine.model_info, codebook)
    assert engine.forecast("KOR", "ct") == fitted_engine.forecast("KOR", "ct")


def test_an_engine_refuses_a_posterior_without_covariate_centres(fitted_tree, codebook):
    dataset = fitted_tree["posterior"].to_dataset()
    with pytest.raises(ValueError, match="severity_center"):
        ForecastEngine(dataset, {}, codebook)
