"""Power-scaling prior and likelihood sensitivity (Kallioinen et al. 2024) of a stored fit, as
priorsense does it.

ArviZ's `psense` reweights the posterior draws as if the prior (or the likelihood) were raised
to the power alpha in (0.99, 1.01), with Pareto-smoothed importance weights, and reports the
derivative of the cumulative Jensen-Shannon distance of every posterior quantity. As in
priorsense, only the **top-level priors** are power-scaled: the parameters a prior file sets
(`arithmetic.PARAMETERS`: cutpoints, slopes, group and cluster scales). The unit-normal terms
of non-centred effects (`*_z`) are part of the model's structure, not a prior anyone chose;
scaling them too (there are hundreds) made the weights noisy enough that a pure-noise control
scored at the threshold.

What the report holds:
- per element (`quantities`): prior and likelihood sensitivity and a diagnosis. For the
  top-level parameters and the headline forecasts, priorsense's rule: sensitive to the prior
  only, "strong prior / weak likelihood"; to both, a potential conflict, which is called a
  "prior-data conflict" when the posterior median lies outside the prior's central 90% (the
  data pull into the prior's tail) and "prior and data both informative" when it does not;
- partially pooled effects (bloc, partner, type, trigger type, partner x type): their prior is
  the hierarchy, which moves when a group scale's prior is scaled, so a weakly observed
  group's effect moving with it is partial pooling at work: "partial pooling" (the `pooled`
  list), never a conflict;
- `flags`: the flagged top-level elements and headline forecasts, each with its prior and
  posterior quantiles (the prior from the fit's `prior` group) and where the posterior
  median sits in the prior;
- `noise`: the sensitivity of independent standard-normal controls appended to the posterior,
  whose true sensitivity is zero: the noise floor of the importance weights. An element is
  sensitive when it exceeds both the threshold and the noise floor (`cuts`);
- `pareto_k`: Pareto k of the power-scaling weights; above `k_threshold` the weights (and the
  numbers) are unreliable;
- `headline`: P(any restriction) for a new trigger (event and reaction integrated out, as
  forecasts are served) of the riskiest partner x type cells under the default scenario.
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
    CLUSTER_SCALES,
    FORECAST_VARIABLES,
    PARAMETERS,
    SUMMARY_EFFECTS,
    any_restriction,
    cluster_sd,
    integrate_clusters,
    linear_predictor,
)
from forecasting.serving.forecasts import Scenario

log = logging.getLogger(__name__)
THRESHOLD = 0.05
ALPHAS = (0.99, 1.01)
GROUPS = (*PARAMETERS, *SUMMARY_EFFECTS)
REQUIRED = ("posterior", "log_prior", "log_likelihood")
HEADLINE_CELLS = 5
NOISE_CONTROLS = 20
QUANTILES = (0.05, 0.5, 0.95)
OK = "ok"
CONFLICT = "prior-data conflict"
INFORMATIVE = "prior and data both informative"
STRONG_PRIOR = "strong prior / weak likelihood"
POOLED = "partial pooling"
FLAGS = (CONFLICT, INFORMATIVE, STRONG_PRIOR)
# both sensitive is a conflict when the posterior median lies outside the prior's central 90%
TAIL = 0.05


def _p_any(params: dict, p: np.ndarray, t: np.ndarray, scenario: Scenario,
           trigger_types: list) -> np.ndarray:
    """P(any restriction) (..., cell) of partner x type cells for a new trigger."""
    trigger = trigger_types.index(scenario.trigger_type)
    idx = (np.full_like(p, value) for value in (trigger, scenario.severity, scenario.alignment))
    eta = linear_predictor(params, p, t, *idx)
    scales = [params.get(name, np.zeros(eta.shape[:-1])) for name in CLUSTER_SCALES]
    sd = cluster_sd(*scales)[..., None]
    return any_restriction(integrate_clusters(eta, params["cutpoints"][..., None, :], sd))


def _params(draws: xr.Dataset) -> dict:
    names = [*FORECAST_VARIABLES, *(s for s in CLUSTER_SCALES if s in draws)]
    return {name: draws[name].values for name in names}


def headline_forecasts(posterior: xr.Dataset, n: int = HEADLINE_CELLS,
                       scenario: Scenario | None = None) -> xr.DataArray:
    """P(any restriction) per draw for the `n` riskiest partner x type cells of a scenario,
    for a new trigger (its event and reaction effects integrated out, as served)."""
    scenario = scenario or Scenario()
    partners = posterior["partner"].values
    types = posterior["intel_type"].values
    p, t = (a.ravel() for a in np.meshgrid(np.arange(len(partners)), np.arange(len(types)),
                                            indexing="ij"))
    p_any = _p_any(_params(posterior), p, t, scenario,
                   list(posterior["trigger_type"].values))  # (chain, draw, cell)
    top = np.argsort(-p_any.mean(axis=(0, 1)))[:n]
    labels = [f"{partners[p[i]]}/{types[t[i]]}" for i in top]
    values = np.moveaxis(p_any[..., top], -1, 0)
    return xr.DataArray(values, dims=("headline", "chain", "draw"),
                        coords={"headline": labels, "chain": posterior["chain"],
                                "draw": posterior["draw"]},
                        name="p_any")


def _prior_headline(prior: xr.Dataset, labels: list[str], scenario: Scenario) -> xr.DataArray:
    """The headline cells' P(any restriction) under the prior draws."""
    partners = list(prior["partner"].values)
    types = list(prior["intel_type"].values)
    pairs = [label.split("/") for label in labels]
    p = np.array([partners.index(a) for a, _ in pairs])
    t = np.array([types.index(b) for _, b in pairs])
    values = _p_any(_params(prior), p, t, scenario, list(prior["trigger_type"].values))
    return xr.DataArray(np.moveaxis(values, -1, 0), dims=("headline", "chain", "draw"),
                        coords={"headline": labels})


@contextlib.contextmanager
def _quiet():
    """ArviZ logs and warns about what the report states."""
    logger = logging.getLogger("arviz_stats.psense")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _diagnosis(prior: float, likelihood: float, cuts: dict[str, float], pooled: bool,
               percentile: float | None) -> str:
    """priorsense's rule, each cut the threshold or the noise floor, whichever is higher;
    sensitive to both is a conflict only where the posterior sits in the prior's tail
    (unknown without prior draws: then a conflict, as priorsense says)."""
    if prior < cuts["prior"]:
        return OK
    if pooled:
        return POOLED
    if likelihood < cuts["likelihood"]:
        return STRONG_PRIOR
    if percentile is not None and TAIL <= percentile <= 1.0 - TAIL:
        return INFORMATIVE
    return CONFLICT


def _label(name: str, element: dict) -> str:
    return f"{name}[{', '.join(str(v) for v in element.values())}]" if element else name


def _elements(values: xr.DataArray) -> list[tuple[dict, float]]:
    """(coords, value) of every element of a sensitivity DataArray."""
    dims = list(values.dims)
    out = []
    for index in np.ndindex(*values.shape):
        element = {d: values[d].values[i] for d, i in zip(dims, index, strict=True)}
        out.append((element, float(values.values[index])))
    return out


def _values(draws: xr.DataArray | None, element: dict) -> np.ndarray | None:
    if draws is None:
        return None
    try:
        return np.asarray(draws.sel(element).values).reshape(-1)
    except (KeyError, ValueError):
        return None


def _compare(posterior: np.ndarray, prior: np.ndarray | None) -> dict:
    """Posterior and prior quantiles of one element, and where the posterior median sits in
    the prior (near 0 or 1: the data pull into the prior's tail)."""
    out = {"posterior_quantiles": [float(v) for v in np.quantile(posterior, QUANTILES)],
           "prior_quantiles": None, "posterior_median_prior_percentile": None}
    if prior is not None:
        out["prior_quantiles"] = [float(v) for v in np.quantile(prior, QUANTILES)]
        out["posterior_median_prior_percentile"] = float(np.mean(prior < np.median(posterior)))
    return out


def weights_pareto_k(log_density: xr.DataArray, alphas=ALPHAS) -> dict[str, float]:
    """Pareto k of the power-scaling importance weights exp((alpha - 1) log_density)."""
    out = {}
    for alpha in alphas:
        lw = (alpha - 1.0) * log_density
        weights = np.exp(lw - lw.max())
        with _quiet():
            k = weights.azstats.pareto_khat(sample_dims=["chain", "draw"], tail="right")
        out[f"{alpha:g}"] = float(k)
    return out


def _total(group: xr.Dataset) -> xr.DataArray:
    """A log-density group summed over its variables and their elements: (chain, draw)."""
    return sum(v.sum([d for d in v.dims if d not in ("chain", "draw")])
               for v in group.data_vars.values())


def compute_sensitivity(tree: xr.DataTree, threshold: float = THRESHOLD,
                        n_headline: int = HEADLINE_CELLS, seed: int = 0) -> dict:
    """Per element and per group: prior and likelihood sensitivity, the noise floor, the
    weights' Pareto k, and the headline forecasts (see the module's docstring)."""
    missing = [g for g in REQUIRED if g not in tree.children]
    if missing:
        from forecasting.evaluation.reports import SensitivityUnavailableError

        raise SensitivityUnavailableError(
            f"the fit lacks the groups {missing}; power-scaling needs log_prior and "
            "log_likelihood (fits by forecasting.model.fitting.fit with extras=True have them): refit")
    posterior = tree["posterior"].to_dataset()
    log_prior = tree["log_prior"].to_dataset()
    log_likelihood = tree["log_likelihood"].to_dataset()
    prior_draws = tree["prior"].to_dataset() if "prior" in tree.children else None
    # the top-level priors only: never the unit-normal terms of non-centred effects
    prior_var_names = [name for name in PARAMETERS if name in log_prior]
    if not prior_var_names:
        from forecasting.evaluation.reports import SensitivityUnavailableError

        raise SensitivityUnavailableError(
            f"the fit's log_prior has none of the model's top-level priors {list(PARAMETERS)}")
    names = [g for g in GROUPS if g in posterior]
    scenario = Scenario()
    headline = headline_forecasts(posterior, n_headline, scenario)
    rng = np.random.default_rng(seed)
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], NOISE_CONTROLS)
    noise = xr.DataArray(rng.standard_normal(shape), dims=("chain", "draw", "noise_control"),
                         coords={"chain": posterior["chain"], "draw": posterior["draw"]})
    scaled = xr.DataTree.from_dict({
        "posterior": posterior[names].assign(p_any=headline, noise=noise),
        "log_prior": log_prior[prior_var_names],
        "log_likelihood": log_likelihood,
    })
    var_names = [*names, "p_any", "noise"]
    with _quiet():
        sense = {component: az.psense(scaled, var_names=var_names, group=component,
                                      alphas=ALPHAS,
                                      group_var_names=prior_var_names if component == "prior"
                                      else None)
                 for component in ("prior", "likelihood")}

    noise_floor = {c: sense[c]["noise"].values for c in ("prior", "likelihood")}
    # a sensitivity no larger than pure noise scores is no evidence of anything
    cuts = {c: max(threshold, float(v.max())) for c, v in noise_floor.items()}
    prior_headline = (_prior_headline(prior_draws, list(headline["headline"].values), scenario)
                      if prior_draws is not None and all(v in prior_draws
                                                         for v in FORECAST_VARIABLES)
                      else None)
    rows = []
    for name in [*names, "p_any"]:
        pooled = name in SUMMARY_EFFECTS
        likelihood = dict((_label(name, e), v) for e, v in _elements(sense["likelihood"][name]))
        post = headline if name == "p_any" else posterior[name]
        before = prior_headline if name == "p_any" else (
            prior_draws[name] if prior_draws is not None and name in prior_draws else None)
        for element, prior_value in _elements(sense["prior"][name]):
            label = _label(name, element)
            lik = likelihood[label]
            row = {"quantity": label, "group": name, "prior": prior_value, "likelihood": lik}
            if prior_value >= cuts["prior"]:
                row |= _compare(_values(post, element), _values(before, element))
            row["diagnosis"] = _diagnosis(prior_value, lik, cuts, pooled,
                                          row.get("posterior_median_prior_percentile"))
            rows.append(row)

    n_draws = int(posterior.sizes["chain"] * posterior.sizes["draw"])
    k_threshold = float(min(1.0 - 1.0 / np.log10(n_draws), 0.7))
    pareto_k = {"prior": weights_pareto_k(_total(log_prior[prior_var_names])),
                "likelihood": weights_pareto_k(_total(log_likelihood))}

    groups = {}
    for name in [*names, "p_any"]:
        members = [r for r in rows if r["group"] == name]
        worst = max(members, key=lambda r: r["prior"])
        counts = {d: sum(r["diagnosis"] == d for r in members) for d in (*FLAGS, POOLED)}
        diagnosis = next((d for d in (*FLAGS, POOLED) if counts[d]), OK)
        groups[name] = {
            "elements": len(members),
            "max_prior": worst["prior"], "worst_element": worst["quantity"],
            "max_likelihood": max(r["likelihood"] for r in members),
            "conflicts": counts[CONFLICT], "informative": counts[INFORMATIVE],
            "strong_prior": counts[STRONG_PRIOR], "pooled": counts[POOLED],
            "diagnosis": diagnosis,
        }
    headline_rows = [dict(r, cell=r["quantity"][len("p_any["):-1])
                     for r in rows if r["group"] == "p_any"]
    return {
        "threshold": threshold,
        "alphas": list(ALPHAS),
        "scaled_priors": prior_var_names,
        "scenario": scenario.as_dict(),
        "forecast": "new trigger (event and reaction effects integrated out)",
        "groups": groups,
        "headline": headline_rows,
        "quantities": [r for r in rows if r["group"] != "p_any"],
        "flags": [r for r in rows if r["diagnosis"] in FLAGS],
        "pooled": [r for r in rows if r["diagnosis"] == POOLED],
        "noise": {"controls": NOISE_CONTROLS,
                  **{c: {"max": float(v.max()), "median": float(np.median(v))}
                     for c, v in noise_floor.items()}},
        "cuts": cuts,
        "pareto_k": pareto_k,
        "k_threshold": k_threshold,
        "reliable": all(k <= k_threshold for ks in pareto_k.values() for k in ks.values()),
        "n_draws": n_draws,
    }
