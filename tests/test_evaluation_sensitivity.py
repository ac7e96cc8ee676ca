"""Power-scaling sensitivity of a stored fit, per group and for headline forecasts."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fixtures_registry import fabricate_posterior

from forecasting.evaluation.reports import SensitivityUnavailableError
from forecasting.evaluation.sensitivity import compute_sensitivity, headline_forecasts


def with_log_prior(tree: xr.DataTree, seed: int = 0) -> xr.DataTree:
    """A fabricated fit plus a log_prior group: Normal(0, 1) log densities of its draws, so
    that the prior pulls on the cutpoints and the severity slope."""
    post = tree["posterior"].to_dataset()
    lp = xr.Dataset({
        "cutpoints": -0.5 * (post["cutpoints"] ** 2).sum("cutpoint"),
        "beta_severity": -0.5 * post["beta_severity"] ** 2,
        "sigma_pt": -0.5 * post["sigma_pt"] ** 2,
    })
    out = tree.copy()
    out["log_prior"] = lp
    return out


@pytest.fixture(scope="module")
def sensitive_tree(codebook):
    # 6 partners keep psense quick (its cost grows with the number of quantities)
    return with_log_prior(fabricate_posterior(codebook, seed=4, draws=200,
                                              partners=list(codebook.partner_codes[:6])))


def test_sensitivity_reports_every_group_with_a_diagnosis(sensitive_tree, codebook):
    report = compute_sensitivity(sensitive_tree)
    assert {"cutpoints", "beta_severity", "sigma_pt", "pt_eff", "p_any"} <= set(report["groups"])
    for group in report["groups"].values():
        assert group["max_prior"] >= 0 and group["max_likelihood"] >= 0
        assert group["diagnosis"] in ("ok", "prior-data conflict",
                                      "strong prior / weak likelihood")
    assert report["groups"]["pt_eff"]["elements"] == 6 * len(codebook.intel_type_codes)
    assert all(r["diagnosis"] != "ok" for r in report["flags"])


def test_headline_forecasts_are_the_riskiest_cells_as_probabilities(sensitive_tree):
    post = sensitive_tree["posterior"].to_dataset()
    p_any = headline_forecasts(post, n=3)
    assert p_any.sizes["headline"] == 3
    assert ((p_any >= 0) & (p_any <= 1)).all()
    means = p_any.mean(("chain", "draw")).values
    assert (np.diff(means) <= 1e-12).all()  # riskiest first
    report = compute_sensitivity(sensitive_tree, n_headline=3)
    assert [r["cell"] for r in report["headline"]] == list(p_any["headline"].values)


def test_a_fit_without_log_prior_cannot_be_power_scaled(codebook):
    with pytest.raises(SensitivityUnavailableError, match="log_prior"):
        compute_sensitivity(fabricate_posterior(codebook, seed=1))
