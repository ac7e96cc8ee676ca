"""The model on simulated data clustered as the coded record is (issue 14).

- where the simulated truth has structure, the model beats climatology on held-out triggers;
- a partner seen in a single extreme event (every type suspended after one trigger, otherwise
  never coded) is not forecast as if the event were its nature: its new-trigger P(any
  restriction) stays near its bloc's, where a model without cluster terms (revision 2, here
  the same model with sigma_event and sigma_reaction held near zero by their priors) takes
  the event for the partner's effect;
- SBC: ranks uniform, and the new-trigger P(any) intervals cover what they should for their
  number of draws, within Monte Carlo error.

Every test fits the model on a few hundred episodes or more: all are slow (`make test-slow`),
about 10 minutes together on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.evaluation import sbc
from forecasting.evaluation.backtest import (
    FoldSpec,
    hierarchical_forecaster,
    run_backtest,
    summarise_backtest,
)
from forecasting.evaluation.baselines import climatology
from forecasting.evaluation.simulate import (
    SEED_RATE_CUTPOINTS,
    default_params,
    simulate_episodes,
    single_event_partner,
    true_level_probabilities,
)
from forecasting.model.arithmetic import CLUSTER_SCALES, FORECAST_VARIABLES
from forecasting.settings import SamplerSettings

pytestmark = pytest.mark.slow

SAMPLER = SamplerSettings(sampler="nutpie", chains=4, draws=500, tune=500, target_accept=0.9,
                          seed=5)
# A truth with structure a forecast can use: partners, types and trigger types differ by about
# a logit, severity and alignment matter; events vary less than in the seed fit.
STRUCTURED = {"bloc": 1.0, "partner": 1.0, "intel_type": 1.0, "bloc_type": 0.3,
              "partner_type": 0.3, "trigger_type": 1.0, "event": 1.0, "reaction": 0.5}


def _indices(codebook, frame):
    return {k: pd.Index(list(getattr(codebook, f"{k}_codes"))).get_indexer(frame[k])
            for k in ("partner", "intel_type", "trigger_type")}


def test_the_model_beats_climatology_on_held_out_triggers_where_the_truth_has_structure(
        codebook, default_priors):
    params = default_params(codebook, 1, scales=STRUCTURED) | {"beta_severity": 1.0,
                                                                 "beta_alignment": 0.6}
    frame, truth = simulate_episodes(codebook, 1200, seed=1, params=params)

    def oracle(train, test):  # the truth's new-trigger probabilities: the best possible
        idx = _indices(codebook, test)
        return true_level_probabilities(truth, idx["partner"], idx["intel_type"],
                                        idx["trigger_type"], test["severity"].to_numpy(),
                                        test["alignment"].to_numpy())

    origin = pd.to_datetime(frame["trigger_date"]).quantile(0.5).date().isoformat()
    spec = FoldSpec(step_months=1200, horizon_months=1200, min_train=100, first_origin=origin)
    table = run_backtest(frame, {"hierarchical": hierarchical_forecaster(codebook,
                                                                         default_priors),
                                 "climatology": climatology, "oracle": oracle}, spec)
    report = summarise_backtest(table, n_boot=2000)
    assert report["n_folds"] == 1 and table["trigger_id"].nunique() >= 40
    assert report["folds"][0]["hierarchical_divergences"] == 0
    clim = report["comparisons"]["climatology"]
    # measured: log -0.057 [-0.088, -0.024], log (any) -0.054 [-0.084, -0.023], Brier -0.013
    assert clim["log"]["hi"] < 0 and clim["log_any"]["hi"] < 0, clim
    assert clim["brier"]["mean"] < 0 and clim["brier_any"]["mean"] < 0, clim
    assert report["comparisons"]["oracle"]["log"]["mean"] > 0  # the truth is still better


def _new_trigger_any(tree, codebook, partner, trigger_type, severity=2, alignment=1):
    """Mean over draws and types of a new trigger's P(any restriction) for one partner."""
    post = tree["posterior"].to_dataset()
    params = {k: post[k].values.reshape(-1, *post[k].shape[2:])
              for k in (*FORECAST_VARIABLES, *CLUSTER_SCALES)}
    n_t = len(codebook.intel_type_codes)
    full = np.full(n_t, 0)
    p_any = sbc.new_trigger_any(
        params, full + list(codebook.partner_codes).index(partner), np.arange(n_t),
        full + list(codebook.trigger_type_codes).index(trigger_type), full + severity,
        full + alignment)
    return float(p_any.mean())


def test_a_partner_seen_in_one_extreme_event_is_not_forecast_as_if_it_were_its_nature(
        codebook, default_priors):
    """As Colombia in the seed file: coded once, every type suspended after one policy
    divergence. Its true effect is an ordinary draw from its bloc; the forecast of a new
    (disclosure) trigger should say so."""
    from forecasting.domain.cells import aggregate
    from forecasting.model.fitting import fit
    from forecasting.model.pymc_model import build_model

    params = default_params(codebook, 0, cutpoints=SEED_RATE_CUTPOINTS)  # the seed's ~7%
    frame, _ = simulate_episodes(codebook, 640, seed=0, params=params, unseen_partners=2)
    frame = single_event_partner(frame, codebook, "COL", trigger_type="policy_divergence")
    cells = aggregate(frame, codebook)
    tiny = {"dist": "HalfNormal", "kwargs": {"sigma": 0.01}}
    forecasts = {}
    for label, priors in (("clusters", default_priors),
                          ("no clusters", default_priors.replace(sigma_event=tiny,
                                                                 sigma_reaction=tiny))):
        tree = fit(build_model(cells, priors), SAMPLER, extras=False)
        assert int(tree["sample_stats"]["diverging"].sum()) == 0, label
        forecasts[label] = {p: _new_trigger_any(tree, codebook, p, "disclosure_incident")
                            for p in ("COL", "PAK", "UKR")}
    with_clusters, without = forecasts["clusters"], forecasts["no clusters"]
    # measured: COL 0.18 beside PAK (its never-coded bloc mate) 0.18 and UKR 0.16;
    # without clusters COL 0.89 (partner effect 4.8, as revision 2 gave Colombia 4.7)
    assert abs(with_clusters["COL"] - with_clusters["PAK"]) < 0.1, forecasts
    assert with_clusters["COL"] < 0.4, forecasts
    assert without["COL"] > 0.6 and without["COL"] > with_clusters["COL"] + 0.4, forecasts


@pytest.fixture(scope="module")
def sbc_report(codebook, default_priors):
    return sbc.run_sbc(codebook, default_priors, n_sims=40, n_episodes=300, n_jobs=2, seed=7)


def test_sbc_ranks_are_uniform_with_clusters_and_unseen_partners(sbc_report):
    assert sbc_report["n_ok"] == sbc_report["n_sims"], sbc_report["failed"]
    assert {"sigma_event", "sigma_reaction", "partner_eff[-1]"} <= set(sbc_report["ranks"])
    assert sbc_report["uniform"], sbc_report["pvalues"]


@pytest.mark.parametrize("key", ["coverage_check", "coverage_unseen"])
def test_new_trigger_intervals_cover_as_expected_for_their_number_of_draws(sbc_report, key):
    """Expectation (b - a)/(L + 1) for 99 draws: 0.88 and 0.48, not 0.90 and 0.50; allowed:
    3 Monte Carlo standard errors over the simulations, plus 0.01 for the thinned draws'
    remaining autocorrelation."""
    for prob, check in sbc_report[key].items():
        assert check["expected"] == sbc.expected_coverage(sbc_report["n_draws"], float(prob))
        assert abs(check["coverage"] - check["expected"]) <= 3 * check["mcse"] + 0.01, \
            (prob, check)
