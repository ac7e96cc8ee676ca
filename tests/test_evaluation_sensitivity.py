"""Power-scaling sensitivity of a stored fit, per group and for headline forecasts."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from forecasting.evaluation.reports import SensitivityUnavailableError
from forecasting.evaluation.sensitivity import compute_sensitivity, headline_forecasts


def with_prior(tree: xr.DataTree, name: str, mu: float, sigma: float,
               data_weight: float = 1.0) -> xr.DataTree:
    """The real fit with its log_prior replaced by a Normal(mu, sigma) prior on `name` alone
    (power-scaling the prior then reweights the draws by that prior only), and its log
    likelihood scaled by `data_weight` (0.01: data a hundredth as informative)."""
    draws = tree["posterior"][name]
    out = tree.copy()
    out["log_prior"] = xr.Dataset({name: draws.copy(data=stats.norm.logpdf(draws, mu, sigma))})
    out["log_likelihood"] = tree["log_likelihood"].to_dataset() * data_weight
    return out


@pytest.fixture(scope="module")
def slope(fitted_tree):
    """Posterior mean and sd of the severity slope."""
    draws = fitted_tree["posterior"]["beta_severity"]
    return float(draws.mean()), float(draws.std())


@pytest.fixture(scope="module")
def real(fitted_tree):
    """The fit as stored, with the log prior of the priors it was fitted with."""
    return compute_sensitivity(fitted_tree)


@pytest.fixture(scope="module")
def tight(fitted_tree, slope):
    """A prior on the severity slope twice as narrow as the data's answer, one sd off it."""
    mean, sd = slope
    return compute_sensitivity(with_prior(fitted_tree, "beta_severity", mean - sd, sd / 2))


@pytest.fixture(scope="module")
def wide(fitted_tree):
    """A prior on the severity slope far wider than its posterior: Normal(0, 10)."""
    return compute_sensitivity(with_prior(fitted_tree, "beta_severity", 0.0, 10.0))


def test_the_real_fit_is_reported_for_every_group(real, fitted_tree, codebook):
    report = real
    assert {"cutpoints", "beta_severity", "sigma_pt", "pt_eff", "p_any"} <= set(report["groups"])
    for group in report["groups"].values():
        assert group["max_prior"] >= 0 and group["max_likelihood"] >= 0
        assert group["diagnosis"] in ("ok", "prior-data conflict",
                                      "strong prior / weak likelihood")
    assert report["groups"]["pt_eff"]["elements"] == (len(codebook.partner_codes)
                                                      * len(codebook.intel_type_codes))
    assert all(r["diagnosis"] != "ok" for r in report["flags"])
    posterior = fitted_tree["posterior"]
    assert report["n_draws"] == posterior.sizes["chain"] * posterior.sizes["draw"]


def test_a_prior_narrower_than_the_data_is_flagged_on_its_parameter(tight):
    group = tight["groups"]["beta_severity"]
    assert group["max_prior"] > 0.5 > tight["threshold"]
    assert group["diagnosis"] == "prior-data conflict"  # the data pull the other way
    assert "beta_severity" in {r["quantity"] for r in tight["flags"]}
    # it is the parameter that prior moves most, by far
    others = [g["max_prior"] for name, g in tight["groups"].items() if name != "beta_severity"]
    assert group["max_prior"] > 2 * max(others)


def test_a_wide_prior_is_not_flagged(wide):
    assert wide["groups"]["beta_severity"]["max_prior"] < wide["threshold"]
    assert wide["flags"] == []
    assert all(g["diagnosis"] == "ok" for g in wide["groups"].values())


def test_likelihood_sensitivity_comes_from_the_data_not_the_prior(tight, wide):
    for name, group in tight["groups"].items():
        assert group["max_likelihood"] == pytest.approx(wide["groups"][name]["max_likelihood"])
    assert tight["groups"]["beta_severity"]["max_likelihood"] > tight["threshold"]


def test_a_strong_prior_on_data_that_say_little_is_a_strong_prior_not_a_conflict(
        fitted_tree, slope):
    mean, sd = slope
    report = compute_sensitivity(with_prior(fitted_tree, "beta_severity", mean, sd / 2,
                                            data_weight=0.01))
    group = report["groups"]["beta_severity"]
    assert group["max_likelihood"] < report["threshold"] < group["max_prior"]
    assert group["diagnosis"] == "strong prior / weak likelihood"


def test_headline_forecasts_are_the_riskiest_cells_as_probabilities(real, fitted_tree):
    post = fitted_tree["posterior"].to_dataset()
    p_any = headline_forecasts(post)
    assert p_any.sizes["headline"] == 5
    assert ((p_any >= 0) & (p_any <= 1)).all()
    means = p_any.mean(("chain", "draw")).values
    assert (np.diff(means) <= 1e-12).all()  # riskiest first
    assert [r["cell"] for r in real["headline"]] == list(p_any["headline"].values)


def test_a_fit_without_log_prior_cannot_be_power_scaled(fitted_tree):
    tree = fitted_tree.copy()
    del tree["log_prior"]
    with pytest.raises(SensitivityUnavailableError, match="log_prior"):
        compute_sensitivity(tree)
