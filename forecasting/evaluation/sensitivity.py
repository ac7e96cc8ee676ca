"""Power-scaling prior and likelihood sensitivity (Kallioinen et al. 2023) of a stored fit.

ArviZ's `psense_summary` scales the prior (log_prior group) and the likelihood
(log_likelihood group) by alpha in (0.99, 1.01) with importance weights and reports the
cumulative-Jensen-Shannon derivative of every posterior quantity. Above the threshold (0.05)
on both: a potential prior-data conflict; on the prior only: a strong prior / weak likelihood.
Shown per parameter group (worst element) and per element, and for headline forecasts: the
P(any restriction) of the riskiest partner x type cells under the default scenario, derived
per draw and added to the posterior before scaling.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import arviz as az
import numpy as np
import xarray as xr

from forecasting.model.arithmetic import (
    FORECAST_VARIABLES,
    PARAMETERS,
    SUMMARY_EFFECTS,
    any_restriction,
    level_probabilities,
    linear_predictor,
)
from forecasting.serving.forecasts import Scenario

log = logging.getLogger(__name__)
THRESHOLD = 0.05
GROUPS = (*PARAMETERS, *SUMMARY_EFFECTS)
REQUIRED = ("posterior", "log_prior", "log_likelihood")
HEADLINE_CELLS = 5
OK = "ok"


def headline_forecasts(posterior: xr.Dataset, n: int = HEADLINE_CELLS,
                       scenario: Scenario | None = None) -> xr.DataArray:
    """P(any restriction) per draw for the `n` riskiest partner x type cells of a scenario."""
    scenario = scenario or Scenario()
    params = {name: posterior[name].values for name in FORECAST_VARIABLES}
    partners = posterior["partner"].values
    types = posterior["intel_type"].values
    p, t = (a.ravel() for a in np.meshgrid(np.arange(len(partners)), np.arange(len(types)),
                                            indexing="ij"))
    trigger = list(posterior["trigger_type"].values).index(scenario.trigger_type)
    scenario_idx = (np.full_like(p, value) for value in (trigger, scenario.severity,
                                                          scenario.alignment))
    eta = linear_predictor(params, p, t, *scenario_idx)
    p_any = any_restriction(level_probabilities(eta, params["cutpoints"][..., None, :]))
    top = np.argsort(-p_any.mean(axis=(0, 1)))[:n]  # p_any: (chain, draw, cell)
    labels = [f"{partners[p[i]]}/{types[t[i]]}" for i in top]
    values = np.moveaxis(p_any[..., top], -1, 0)
    return xr.DataArray(values, dims=("headline", "chain", "draw"),
                        coords={"headline": labels, "chain": posterior["chain"],
                                "draw": posterior["draw"]},
                        name="p_any")


@contextlib.contextmanager
def _quiet():
    """psense_summary logs a warning pointing at its docs whenever it flags something; the
    flags are in the report."""
    logger = logging.getLogger("arviz_stats.psense")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _diagnosis(prior: float, likelihood: float, threshold: float) -> str:
    if prior >= threshold and likelihood >= threshold:
        return "prior-data conflict"
    if prior >= threshold:
        return "strong prior / weak likelihood"
    return OK


def compute_sensitivity(tree: xr.DataTree, threshold: float = THRESHOLD,
                        n_headline: int = HEADLINE_CELLS) -> dict:
    """Per element, per group and per headline forecast: prior and likelihood sensitivity."""
    missing = [g for g in REQUIRED if g not in tree.children]
    if missing:
        from forecasting.evaluation.reports import SensitivityUnavailableError

        raise SensitivityUnavailableError(
            f"the fit lacks the groups {missing}; power-scaling needs log_prior and "
            "log_likelihood (fits by forecasting.model.fitting.fit with extras=True have them): refit")
    posterior = tree["posterior"].to_dataset()
    names = [g for g in GROUPS if g in posterior]
    headline = headline_forecasts(posterior, n_headline)
    scaled = xr.DataTree.from_dict({
        "posterior": posterior[names].assign(p_any=headline),
        "log_prior": tree["log_prior"].to_dataset(),
        "log_likelihood": tree["log_likelihood"].to_dataset(),
    })
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet():
        warnings.simplefilter("ignore")
        table = az.psense_summary(scaled, var_names=[*names, "p_any"], threshold=threshold,
                                  round_to=10)
    rows = []
    for label, row in table.iterrows():
        prior, lik = float(row["prior"]), float(row["likelihood"])
        rows.append({"quantity": str(label), "group": str(label).split("[")[0],
                     "prior": prior, "likelihood": lik,
                     "diagnosis": _diagnosis(prior, lik, threshold)})
    groups = {}
    for name in [*names, "p_any"]:
        members = [r for r in rows if r["group"] == name]
        if not members:
            continue
        worst = max(members, key=lambda r: r["prior"])
        flags = [r for r in members if r["diagnosis"] != OK]
        groups[name] = {
            "elements": len(members),
            "max_prior": worst["prior"], "worst_element": worst["quantity"],
            "max_likelihood": max(r["likelihood"] for r in members),
            "conflicts": sum(r["diagnosis"] == "prior-data conflict" for r in members),
            "strong_prior": sum(r["diagnosis"] == "strong prior / weak likelihood"
                                for r in members),
            "diagnosis": (OK if not flags else
                          "prior-data conflict" if any(r["diagnosis"] == "prior-data conflict"
                                                       for r in flags)
                          else "strong prior / weak likelihood"),
        }
    headline_rows = [dict(r, cell=r["quantity"][len("p_any["):-1])
                     for r in rows if r["group"] == "p_any"]
    return {
        "threshold": threshold,
        "alphas": [0.99, 1.01],
        "scenario": Scenario().as_dict(),
        "groups": groups,
        "headline": headline_rows,
        "quantities": [r for r in rows if r["group"] != "p_any"],
        "flags": [r for r in rows if r["diagnosis"] != OK],
        "n_draws": int(posterior.sizes["chain"] * posterior.sizes["draw"]),
    }
