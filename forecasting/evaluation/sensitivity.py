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

from forecasting.serving.forecasts import Scenario, level_probabilities

log = logging.getLogger(__name__)
THRESHOLD = 0.05
GROUPS = ("cutpoints", "beta_severity", "beta_alignment", "sigma_bloc", "sigma_partner",
          "sigma_type", "sigma_bloc_type", "sigma_pt", "sigma_trigger", "bloc_eff",
          "partner_eff", "type_eff", "trigger_eff", "pt_eff")
REQUIRED = ("posterior", "log_prior", "log_likelihood")
HEADLINE_CELLS = 5
OK = "ok"


def headline_forecasts(posterior: xr.Dataset, attrs, n: int = HEADLINE_CELLS,
                       scenario: Scenario | None = None) -> xr.DataArray:
    """P(any restriction) per draw for the `n` riskiest partner x type cells of a scenario."""
    scenario = scenario or Scenario()
    eta = (posterior["pt_eff"] + posterior["trigger_eff"].sel(trigger_type=scenario.trigger_type)
           + posterior["beta_severity"] * (scenario.severity - float(attrs["severity_center"]))
           + posterior["beta_alignment"] * (scenario.alignment - float(attrs["alignment_center"])))
    eta = eta.transpose("partner", "intel_type", "chain", "draw")
    cut = posterior["cutpoints"].transpose("cutpoint", "chain", "draw").values
    shape = eta.shape
    flat = eta.values.reshape(shape[0] * shape[1], -1)
    p_any = 1 - level_probabilities(flat, cut.reshape(3, -1))[:, 0, :]
    top = np.argsort(-p_any.mean(axis=1))[:n]
    labels = [f"{eta.partner.values[i // shape[1]]}/{eta.intel_type.values[i % shape[1]]}"
              for i in top]
    values = p_any[top].reshape(len(top), shape[2], shape[3])
    return xr.DataArray(values, dims=("headline", "chain", "draw"),
                        coords={"headline": labels, "chain": eta.chain, "draw": eta.draw},
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


def compute_sensitivity(dt: xr.DataTree, threshold: float = THRESHOLD,
                        n_headline: int = HEADLINE_CELLS) -> dict:
    """Per element, per group and per headline forecast: prior and likelihood sensitivity."""
    missing = [g for g in REQUIRED if g not in dt.children]
    if missing:
        from forecasting.evaluation.reports import SensitivityUnavailableError

        raise SensitivityUnavailableError(
            f"the fit lacks the groups {missing}; power-scaling needs log_prior and "
            "log_likelihood (fits by forecasting.model.fitting.fit with extras=True have them): refit")
    posterior = dt["posterior"].to_dataset()
    names = [g for g in GROUPS if g in posterior]
    headline = headline_forecasts(posterior, dt.attrs, n_headline)
    scaled = xr.DataTree.from_dict({
        "posterior": posterior[names].assign(p_any=headline),
        "log_prior": dt["log_prior"].to_dataset(),
        "log_likelihood": dt["log_likelihood"].to_dataset(),
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
