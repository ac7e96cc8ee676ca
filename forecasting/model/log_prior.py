"""The log prior density of every posterior draw (group log_prior), in numpy.

What `pm.stats.compute_log_prior` stores, element by element (every free variable on its own
scale, no Jacobian), from a table the model builder writes as it creates each variable
(`PriorTerm`, pymc_model.build_model's `prior_terms`). PyMC compiled a function for this on
every call and evaluated it one draw at a time: 0.8-1.2 s of a warm seed refit, 3-14 s of a
fresh one; here it is a few vectorised expressions (tests/test_log_prior.py holds it to PyMC's
for every family and both parameterisations, to 1e-8: PyMC keeps some prior parameters as
float32 constants).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


@dataclass(frozen=True)
class PriorTerm:
    """The prior of one free variable: a family of forecasting.model.priors.FAMILIES (or
    "ZeroSumNormal") with numeric parameters, whose sigma may instead be another posterior
    variable (`sigma`, a centred effect), summed over its last `zerosum_axes` axes as
    PyMC's ZeroSumNormal density is."""

    dist: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    sigma: str | None = None
    zerosum_axes: int = 0


def _half(logpdf: Callable) -> Callable:
    def half(x, **kw):
        return np.where(x >= 0, np.log(2.0) + logpdf(x, **kw), -np.inf)
    return half


def _normal(x, mu=0.0, sigma=1.0):
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - _LOG_SQRT_2PI


# PyMC's parameter names, scipy's densities
DENSITIES: dict[str, Callable[..., Any]] = {
    "Normal": _normal,
    "StudentT": lambda x, nu, mu=0.0, sigma=1.0: stats.t.logpdf(x, nu, mu, sigma),
    "HalfNormal": _half(lambda x, sigma: _normal(x, 0.0, sigma)),
    "HalfStudentT": _half(lambda x, nu, sigma: stats.t.logpdf(x, nu, 0.0, sigma)),
    "Exponential": lambda x, lam: stats.expon.logpdf(x, scale=1.0 / np.asarray(lam)),
    "Gamma": lambda x, alpha, beta: stats.gamma.logpdf(x, alpha, scale=1.0 / np.asarray(beta)),
    "LogNormal": lambda x, mu, sigma: stats.lognorm.logpdf(x, sigma, scale=np.exp(mu)),
}


def _zero_sum_normal(x: xr.DataArray, sigma, axes: int) -> xr.DataArray:
    """PyMC's ZeroSumNormal density of one draw: the Normal terms over the support, with
    the normalising constant counted once per degree of freedom."""
    support = x.dims[x.ndim - axes:]
    dof = float(np.prod([x.sizes[d] - 1 for d in support]))
    return (-0.5 * (x / sigma) ** 2).sum(support) - (_LOG_SQRT_2PI + np.log(sigma)) * dof


def term_log_density(x: xr.DataArray, term: PriorTerm, posterior: xr.Dataset) -> xr.DataArray:
    """log p(x) under `term`, with the dims PyMC gives it (a ZeroSumNormal's summed out)."""
    kwargs = dict(term.kwargs)
    if term.sigma is not None:
        kwargs["sigma"] = posterior[term.sigma]
    if term.dist == "ZeroSumNormal":
        return _zero_sum_normal(x, kwargs.get("sigma", 1.0), term.zerosum_axes)
    if term.dist not in DENSITIES:
        raise ValueError(f"Requested the density of '{term.dist}' but it must be one of "
                         f"{[*DENSITIES, 'ZeroSumNormal']}")
    density = DENSITIES[term.dist]
    if any(isinstance(v, xr.DataArray) for v in kwargs.values()):
        return xr.apply_ufunc(lambda v, *args: density(v, **dict(zip(kwargs, args, strict=True))),
                              x, *kwargs.values())
    # vector parameters (one per element, e.g. the cutpoints' locations) run along x's last axis
    values = density(x.values, **{k: np.asarray(v, dtype=float) for k, v in kwargs.items()})
    return x.copy(data=values)


def log_prior(posterior: xr.Dataset, terms: Mapping[str, PriorTerm]) -> xr.Dataset:
    """Group log_prior: log p of every variable of `terms` at every draw of `posterior`
    (those the posterior keeps: a large fit drops cluster_eff_z, sampling.bound_cluster_draws)."""
    out = {name: term_log_density(posterior[name].astype(float), term, posterior)
           for name, term in terms.items() if name in posterior}
    return xr.Dataset(out)
