"""PSIS-LOO batched over the observations (forecasting.model.psis) gives az.loo's figures.

On the seed fit the figures are ArviZ's to the last bit (bench/bench_diagnostics.py checks
`diagnose` against its ArviZ-based predecessor); here they are held to az.loo on
log likelihoods that PSIS finds easy, hard (an outlier: Pareto k above 0.7) and tied.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr
from scipy.special import logsumexp

from forecasting.model import psis


def _log_lik(chains=4, draws=500, seed=0) -> np.ndarray:
    """(chain, draw, obs) log likelihoods of a normal mean's posterior draws: 30 points,
    the last an outlier whose leave-one-out posterior differs from the full one."""
    rng = np.random.default_rng(seed)
    y = np.r_[rng.normal(size=29), 9.0]
    mu = rng.normal(y.mean(), 1 / np.sqrt(len(y)), size=(chains, draws, 1))
    ll = -0.5 * (y - mu) ** 2 - 0.5 * np.log(2 * np.pi)
    ll[..., 0] = np.round(ll[..., 0], 2)  # many tied draws
    return ll


def _arviz(ll: np.ndarray, posterior: np.ndarray):
    tree = xr.DataTree.from_dict({
        "posterior": xr.Dataset({"mu": (("chain", "draw"), posterior)}),
        "log_likelihood": xr.Dataset({"y": (("chain", "draw", "obs"), ll)}),
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return az.loo(tree, pointwise=True)


@pytest.mark.parametrize("chains", [4, 1])
def test_the_batched_loo_is_az_loo(chains):
    ll = _log_lik(chains)
    mu = ll[..., 1]  # any posterior draws: az.loo's r_eff comes from their ESS
    expected = _arviz(ll, mu)
    r_eff = 1.0 if chains == 1 else float(
        az.ess(xr.Dataset({"mu": (("chain", "draw"), mu)}), method="mean")["mu"]) / mu.size
    got = psis.loo(ll.reshape(-1, ll.shape[-1]).T, r_eff)
    np.testing.assert_allclose(got["elpd_i"], expected.elpd_i.values, rtol=1e-12)
    np.testing.assert_allclose(got["pareto_k"], expected.pareto_k.values, rtol=1e-12)
    np.testing.assert_allclose(psis.summary(got["elpd_i"], got["p_loo_i"]),
                               (expected.elpd, expected.se, expected.p), rtol=1e-12)
    assert got["pareto_k"][-1] > 0.7 > got["pareto_k"][:-1].max()  # the outlier is seen


def test_a_tail_without_spread_is_refused_as_arviz_refuses_it():
    ll = _log_lik()
    ll[..., 3] = -1.0  # never changes: the importance ratios have no tail
    with pytest.raises(ValueError, match="All tail values are the same"):
        psis.loo(ll.reshape(-1, ll.shape[-1]).T, 1.0)


def test_the_row_log_sum_exp_is_scipys_with_repeated_and_infinite_maxima():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 1000))
    a[1, :3] = a[1].max() + 1  # three maxima
    a[2] = -np.inf
    a[3, 5] = np.inf
    for b in (None, 1 / a.shape[1]):
        with np.errstate(invalid="ignore"):
            want = logsumexp(a, axis=1, b=b)
        np.testing.assert_array_equal(psis._logsumexp(a, b), want)
