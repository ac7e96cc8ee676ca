"""The log prior in numpy (forecasting.model.log_prior) against PyMC's compute_log_prior."""

import numpy as np
import pymc as pm
import pytest
import xarray as xr

from forecasting.model.fitting import add_log_prior
from forecasting.model.log_prior import DENSITIES, PriorTerm, log_prior
from forecasting.model.pymc_model import build_model, prior_variable

FAMILY_KWARGS = {
    "Normal": {"mu": 0.3, "sigma": 1.7},
    "StudentT": {"nu": 4.0, "mu": -0.2, "sigma": 0.8},
    "HalfNormal": {"sigma": 0.6},
    "HalfStudentT": {"nu": 3.0, "sigma": 0.5},
    "Exponential": {"lam": 2.5},
    "Gamma": {"alpha": 2.0, "beta": 4.0},
    "LogNormal": {"mu": -1.0, "sigma": 0.7},
}


def _pymc_log_prior(tree: xr.DataTree, model: pm.Model) -> xr.Dataset:
    return pm.stats.compute_log_prior(tree, model=model, progressbar=False,
                                      extend_inferencedata=False)


def _assert_same(ours: xr.Dataset, theirs: xr.Dataset) -> None:
    assert set(ours.data_vars) == set(theirs.data_vars)
    for name in theirs.data_vars:
        a, b = ours[name], theirs[name]
        # PyMC names the dim of a variable whose spare slots the fit dropped (cluster_eff_z)
        # `<name>_dim_0`, its model's reaction dim being longer; ours keeps the posterior's
        expected = tuple(a.dims[i] if d.startswith(f"{name}_dim_") else d
                         for i, d in enumerate(b.dims))
        assert a.dims == expected, name
        # PyMC rounds some prior parameters to float32 constants (2e-9 on a HalfNormal's)
        np.testing.assert_allclose(a.values, b.values, rtol=1e-7, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("family", sorted(FAMILY_KWARGS))
def test_every_prior_family_has_pymcs_density(family):
    assert set(FAMILY_KWARGS) == set(DENSITIES)
    x = np.array([0.05, 0.4, 1.3, 3.0])
    with pm.Model():
        rv = getattr(pm, family).dist(**FAMILY_KWARGS[family])
        expected = pm.logp(rv, x).eval()
    posterior = xr.Dataset({"v": (("chain", "draw"), x[None])})
    ours = log_prior(posterior, {"v": PriorTerm(family, FAMILY_KWARGS[family])})["v"]
    # PyMC keeps a parameter such as 2.5 as a float32 constant and takes 1/lam in float32
    # (4e-7 relative on the Exponential, 2e-8 absolute on the HalfStudentT); numpy in float64
    np.testing.assert_allclose(ours.values[0], expected, rtol=1e-6, atol=1e-7)


def test_the_fits_log_prior_is_pymcs(small_fit, seed_like_cells, default_priors):
    """The stored group, computed in numpy, equals compute_log_prior on the same draws."""
    tree = small_fit.idata
    model = build_model(seed_like_cells, default_priors)
    _assert_same(tree["log_prior"].to_dataset(), _pymc_log_prior(tree, model))


@pytest.mark.filterwarnings("ignore:The effect of Potentials:UserWarning")  # prior draws only
@pytest.mark.parametrize("form", ["centered", "noncentered"])
def test_both_parameterisations_and_a_vector_prior_match_pymc(seed_like_cells, default_priors,
                                                             form):
    """Every effect centred (Normal and ZeroSumNormal with a sampled sigma) or not, on prior
    draws; the cutpoints' locations a vector."""
    model = build_model(seed_like_cells, default_priors, parameterization=form)
    names = [rv.name for rv in model.free_RVs]
    with model:
        tree = pm.sample_prior_predictive(draws=20, var_names=names, random_seed=3)
    tree["posterior"] = tree["prior"]
    ours = xr.DataTree.from_dict({"posterior": tree["prior"].to_dataset()})
    add_log_prior(ours, model)
    _assert_same(ours["log_prior"].to_dataset(), _pymc_log_prior(tree, model))


def test_a_model_that_noted_no_priors_falls_back_to_pymc(default_priors):
    with pm.Model() as model:
        prior_variable("sigma_pt", default_priors)
    del model.prior_terms
    draws = np.array([0.2, 0.9])
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"sigma_pt": (("chain", "draw"), draws[None])})})
    add_log_prior(tree, model)
    expected = pm.logp(model["sigma_pt"], draws).eval()
    np.testing.assert_allclose(tree["log_prior"]["sigma_pt"].values[0], expected)
