"""Power-scaling sensitivity of a stored fit, as priorsense does it: the top-level priors only,
a noise control, per-element flags with prior and posterior quantiles, partial pooling not
called a conflict, headline forecasts as served."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from forecasting.evaluation.reports import SensitivityUnavailableError
from forecasting.evaluation.sensitivity import (
    CONFLICT,
    FLAGS,
    INFORMATIVE,
    OK,
    POOLED,
    STRONG_PRIOR,
    compute_sensitivity,
    headline_forecasts,
)
from forecasting.model.arithmetic import PARAMETERS, SUMMARY_EFFECTS


def with_prior(tree: xr.DataTree, name: str, mu, sigma, data_weight: float = 1.0,
               keep_log_prior: bool = False) -> xr.DataTree:
    """The real fit with a Normal(mu, sigma) prior on `name` (per element for a vector): its
    log_prior term (alone, unless `keep_log_prior`) and its prior draws replaced, and the log
    likelihood scaled by `data_weight` (0.01: data a hundredth as informative)."""
    draws = tree["posterior"][name]
    out = tree.copy()
    term = draws.copy(data=stats.norm.logpdf(draws, mu, sigma))
    log_prior = tree["log_prior"].to_dataset() if keep_log_prior else xr.Dataset()
    out["log_prior"] = log_prior.assign({name: term})
    out["log_likelihood"] = tree["log_likelihood"].to_dataset() * data_weight
    prior = tree["prior"].to_dataset()
    rng = np.random.default_rng(0)
    values = rng.normal(mu, sigma, prior[name].shape)
    out["prior"] = prior.assign({name: prior[name].copy(data=values)})
    return out


def _moments(tree: xr.DataTree, name: str):
    draws = tree["posterior"][name]
    others = [d for d in draws.dims if d in ("chain", "draw")]
    return draws.mean(others).values, draws.std(others).values


@pytest.fixture(scope="module")
def real(fitted_tree):
    """The fit as stored, with the log prior of the priors it was fitted with."""
    return compute_sensitivity(fitted_tree)


@pytest.fixture(scope="module")
def tight(fitted_tree):
    """A prior on the cutpoints (the best-identified parameters) twice as narrow as the
    data's answer and one posterior sd off it."""
    mean, sd = _moments(fitted_tree, "cutpoints")
    return compute_sensitivity(with_prior(fitted_tree, "cutpoints", mean - sd, sd / 2))


@pytest.fixture(scope="module")
def wide(fitted_tree):
    """A prior on the severity slope far wider than its posterior: Normal(0, 10)."""
    return compute_sensitivity(with_prior(fitted_tree, "beta_severity", 0.0, 10.0))


def _by_quantity(report):
    return {r["quantity"]: r for r in report["quantities"] + report["headline"]}


def test_the_real_fit_is_reported_for_every_group(real, fitted_tree, codebook):
    report = real
    assert {"cutpoints", "beta_severity", "sigma_pt", "pt_eff", "p_any"} <= set(report["groups"])
    for group in report["groups"].values():
        assert group["max_prior"] >= 0 and group["max_likelihood"] >= 0
        assert group["diagnosis"] in (OK, POOLED, *FLAGS)
    assert report["groups"]["pt_eff"]["elements"] == (len(codebook.partner_codes)
                                                      * len(codebook.intel_type_codes))
    assert all(r["diagnosis"] in FLAGS for r in report["flags"])
    posterior = fitted_tree["posterior"]
    assert report["n_draws"] == posterior.sizes["chain"] * posterior.sizes["draw"]


def test_only_the_top_level_priors_are_scaled(real, fitted_tree):
    """The unit-normal terms of non-centred effects are not power-scaled: making them wildly
    different changes nothing."""
    assert set(real["scaled_priors"]) == set(PARAMETERS) & set(fitted_tree["log_prior"])
    assert not any(name.endswith("_z") for name in real["scaled_priors"])
    log_prior = fitted_tree["log_prior"].to_dataset()
    structural = [name for name in log_prior.data_vars if name not in PARAMETERS]
    assert structural, "the fit's log_prior should hold the *_z terms"
    rng = np.random.default_rng(1)
    noisy = log_prior.assign({name: log_prior[name] * 50 + rng.normal(0, 30, log_prior[name].shape)
                              for name in structural})
    tree = fitted_tree.copy()
    tree["log_prior"] = noisy
    again = compute_sensitivity(tree)
    before, after = _by_quantity(real), _by_quantity(again)
    assert before.keys() == after.keys()
    for quantity, row in before.items():
        assert after[quantity]["prior"] == pytest.approx(row["prior"], abs=1e-12), quantity


def test_the_noise_control_is_near_zero_and_measures_the_weights(real, fitted_tree):
    """Standard-normal controls carry no information: what they score is the noise floor. With
    the top-level priors it is far below the threshold; scaling every log-prior term (the
    unit-normal ones too, as before) raises it towards the threshold."""
    noise = real["noise"]
    assert noise["controls"] >= 20
    assert 0 <= noise["prior"]["median"] <= noise["prior"]["max"] < 0.6 * real["threshold"]
    assert real["cuts"]["prior"] == pytest.approx(max(real["threshold"], noise["prior"]["max"]))
    assert all(np.isfinite(k) for ks in real["pareto_k"].values() for k in ks.values())
    assert real["reliable"] == all(k <= real["k_threshold"]
                                   for ks in real["pareto_k"].values() for k in ks.values())
    # every log-prior term scaled, as before: one top-level entry holding the whole sum
    log_prior = fitted_tree["log_prior"].to_dataset()
    total = sum(v.sum([d for d in v.dims if d not in ("chain", "draw")])
                for v in log_prior.data_vars.values())
    tree = fitted_tree.copy()
    tree["log_prior"] = xr.Dataset({"sigma_pt": total})
    everything = compute_sensitivity(tree)
    assert everything["noise"]["prior"]["median"] > 2 * noise["prior"]["median"]


def test_a_narrow_prior_on_a_well_identified_parameter_is_flagged(tight, fitted_tree):
    group = tight["groups"]["cutpoints"]
    assert group["conflicts"] == 3 and group["diagnosis"] == CONFLICT
    flagged = {r["quantity"]: r for r in tight["flags"]}
    mean, sd = _moments(fitted_tree, "cutpoints")
    for k, label in enumerate(fitted_tree["posterior"]["cutpoint"].values):
        row = flagged[f"cutpoints[{label}]"]
        assert row["prior"] > tight["cuts"]["prior"] and row["likelihood"] > tight["cuts"][
            "likelihood"]
        # prior and posterior quantiles side by side: the posterior median in the prior's
        # upper tail (two prior sds above its mean)
        lo, mid, hi = row["prior_quantiles"]
        assert mid == pytest.approx(mean[k] - sd[k], abs=0.1 * sd[k])
        assert hi - lo == pytest.approx(2 * 1.645 * sd[k] / 2, rel=0.1)
        post = fitted_tree["posterior"]["cutpoints"].sel(cutpoint=label).values.ravel()
        assert row["posterior_quantiles"][1] == pytest.approx(np.median(post))
        assert row["posterior_median_prior_percentile"] > 0.95
    # it is the parameter that prior moves most, clearly. Quantities correlated with the
    # cutpoints move too (sigma_event through the cluster sd, the slopes): by how much
    # depends on the session fit's few draws (1.9x to over 2x below the cutpoints seen)
    others = [g["max_prior"] for name, g in tight["groups"].items()
              if name not in ("cutpoints", "p_any")]
    assert group["max_prior"] > 1.5 * max(others)


def test_a_wide_prior_is_not_flagged(wide):
    assert wide["groups"]["beta_severity"]["max_prior"] < wide["threshold"]
    assert wide["flags"] == [] and wide["pooled"] == []
    assert all(g["diagnosis"] == OK for g in wide["groups"].values())


def test_likelihood_sensitivity_comes_from_the_data_not_the_prior(tight, wide):
    for name, group in tight["groups"].items():
        assert group["max_likelihood"] == pytest.approx(wide["groups"][name]["max_likelihood"])
    assert tight["groups"]["cutpoints"]["max_likelihood"] > tight["threshold"]


def test_a_strong_prior_on_data_that_say_little_is_a_strong_prior_not_a_conflict(fitted_tree):
    mean, sd = _moments(fitted_tree, "beta_severity")
    report = compute_sensitivity(with_prior(fitted_tree, "beta_severity", mean, sd / 2,
                                            data_weight=0.01))
    group = report["groups"]["beta_severity"]
    assert group["max_likelihood"] < report["threshold"] < group["max_prior"]
    assert group["diagnosis"] == STRONG_PRIOR


def test_a_prior_the_data_agree_with_is_informative_not_a_conflict(fitted_tree):
    """Sensitive to both, the posterior in the middle of the prior: both inform it."""
    mean, sd = _moments(fitted_tree, "cutpoints")
    report = compute_sensitivity(with_prior(fitted_tree, "cutpoints", mean, sd))
    rows = [r for r in report["flags"] if r["group"] == "cutpoints"]
    assert rows and all(r["diagnosis"] == INFORMATIVE for r in rows)
    assert all(0.05 <= r["posterior_median_prior_percentile"] <= 0.95 for r in rows)


def test_partial_pooling_is_not_called_a_conflict(real):
    for name in SUMMARY_EFFECTS:
        group = real["groups"].get(name)
        if group is None:
            continue
        assert group["conflicts"] == group["strong_prior"] == group["informative"] == 0
        assert group["diagnosis"] in (OK, POOLED)
    assert not any(r["group"] in SUMMARY_EFFECTS for r in real["flags"])
    for row in real["pooled"]:
        assert row["group"] in SUMMARY_EFFECTS and row["prior"] >= real["cuts"]["prior"]
        assert len(row["posterior_quantiles"]) == 3 and len(row["prior_quantiles"]) == 3


def test_headline_forecasts_are_the_riskiest_cells_as_served(real, fitted_tree, fitted_engine):
    post = fitted_tree["posterior"].to_dataset()
    p_any = headline_forecasts(post)
    assert p_any.sizes["headline"] == 5
    assert ((p_any >= 0) & (p_any <= 1)).all()
    means = p_any.mean(("chain", "draw")).values
    assert (np.diff(means) <= 1e-12).all()  # riskiest first
    assert [r["cell"] for r in real["headline"]] == list(p_any["headline"].values)
    # a new trigger's P(any restriction), as the forecast engine serves it
    partner, intel_type = str(p_any["headline"].values[0]).split("/")
    served = fitted_engine.forecast(partner, intel_type)["any_restriction"]["mean"]
    assert means[0] == pytest.approx(served, abs=1e-3)


def test_a_fit_without_log_prior_cannot_be_power_scaled(fitted_tree):
    tree = fitted_tree.copy()
    del tree["log_prior"]
    with pytest.raises(SensitivityUnavailableError, match="log_prior"):
        compute_sensitivity(tree)
