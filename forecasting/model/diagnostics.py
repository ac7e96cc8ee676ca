"""Diagnostics of a fit: convergence, efficiency, PSIS-LOO and posterior predictive checks.

`diagnose` returns a JSON-serialisable dict that the gate (forecasting.model.gate) judges and
the registry stores with the version.
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from forecasting.model.predictive import OBSERVED, episode_log_likelihood


def _flatten(ds: xr.Dataset, name: str) -> pd.Series:
    """Every scalar entry of every variable, labelled "name[coord, coord]"."""
    out = {}
    for var, da in ds.data_vars.items():
        if da.ndim == 0:
            out[var] = float(da)
            continue
        for idx, value in zip(np.ndindex(da.shape), da.values.ravel(), strict=True):
            labels = ", ".join(str(da.coords[d].values[i]) for d, i in zip(da.dims, idx,
                                                                          strict=True))
            out[f"{var}[{labels}]"] = float(value)
    return pd.Series(out, name=name)


def _dataset(result: xr.DataTree | xr.Dataset) -> xr.Dataset:
    """An ArviZ statistic of a one-group tree, as a Dataset (it may come back at the root)."""
    if isinstance(result, xr.DataTree):
        return (result["posterior"] if "posterior" in result.children else result).to_dataset()
    return result


def summary_table(tree: xr.DataTree, var_names: list[str] | None = None) -> pd.DataFrame:
    """R-hat, bulk and tail ESS, MCSE of the mean and sd of every scalar posterior entry.

    Built from az.rhat / az.ess / az.mcse, which keep each entry's coords: az.summary of
    ArviZ 1.3 labels the rows of two-dimensional variables out of order (pt_eff[ISR, humint]
    got another cell's numbers), so its labels cannot name the worst entries.
    """
    posterior = tree.posterior.to_dataset()
    if var_names is not None:
        posterior = posterior[var_names]
    data = xr.DataTree.from_dict({"posterior": posterior})
    with warnings.catch_warnings():
        # R-hat of a constant divides by zero; `diagnose` sorts such entries out
        warnings.simplefilter("ignore", RuntimeWarning)
        columns = [
            _flatten(_dataset(az.rhat(data)), "r_hat"),
            _flatten(_dataset(az.ess(data, method="bulk")), "ess_bulk"),
            _flatten(_dataset(az.ess(data, method="tail")), "ess_tail"),
            _flatten(_dataset(az.mcse(data)), "mcse_mean"),
            _flatten(posterior.std(("chain", "draw")), "sd"),
        ]
    return pd.concat(columns, axis=1)


def _float(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _ebfmi(energy: np.ndarray) -> list[float]:
    """E-BFMI per chain: mean squared energy change over the energy variance."""
    out = []
    for e in np.atleast_2d(energy):
        var = np.var(e)
        out.append(float(np.mean(np.diff(e) ** 2) / var) if var > 0 else float("nan"))
    return out


def _treedepth_fraction(stats: xr.Dataset) -> float | None:
    for name in ("maxdepth_reached", "reached_max_treedepth"):
        if name in stats:
            return float(stats[name].mean())
    if "tree_depth" in stats:  # numpyro: depth of the tree; its default limit is 10
        return float((stats["tree_depth"] >= 10).mean())
    return None


def _level_shares(counts: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Level shares per group; counts (..., cell, level) -> (..., group, level)."""
    onehot = np.zeros((len(groups), n_groups))
    onehot[np.arange(len(groups)), groups] = 1.0
    totals = np.einsum("...cl,cg->...gl", counts, onehot)
    with np.errstate(invalid="ignore", divide="ignore"):
        return totals / totals.sum(axis=-1, keepdims=True)


def _loo(tree: xr.DataTree):
    with warnings.catch_warnings():
        # high Pareto k is reported through the counts, not as a warning
        warnings.simplefilter("ignore", UserWarning)
        return az.loo(tree, pointwise=True)


def _loo_summary(loo, weights: np.ndarray | None) -> dict[str, Any]:
    k = np.asarray(loo.pareto_k).ravel()
    w = np.ones_like(k) if weights is None else np.asarray(weights, dtype=float)
    if weights is None:
        elpd, se, p_loo = float(loo.elpd), float(loo.se), float(loo.p)
    else:
        elpd_i = np.asarray(loo.elpd_i).ravel()
        n = w.sum()
        elpd = float(np.sum(w * elpd_i))
        se = float(np.sqrt(n * np.sum(w * (elpd_i - elpd / n) ** 2) / n))
        p_loo = float(loo.p)  # filled in by the caller, who knows the pointwise lpd
    bands = {"good (<=0.5)": k <= 0.5, "ok (0.5-0.7]": (k > 0.5) & (k <= 0.7),
             "bad (0.7-1]": (k > 0.7) & (k <= 1), "very bad (>1)": k > 1}
    return {"elpd": elpd, "se": se, "p_loo": p_loo, "n_points": int(w.sum()),
            "max_pareto_k": float(np.nanmax(k)),
            "pareto_k_counts": {b: int(w[m].sum()) for b, m in bands.items()}}


def _loo_or_error(compute) -> dict[str, Any]:
    """A LOO summary, or why there is none: PSIS raises when a tail of importance weights has
    no spread, as when chains never moved. Without `max_pareto_k` the gate fails the fit."""
    try:
        return compute()
    except ValueError as exc:
        return {"error": f"PSIS-LOO could not be computed: {exc}"}


def episode_loo(tree: xr.DataTree) -> dict[str, Any]:
    """PSIS-LOO leaving out one episode at a time (the gate's LOO).

    The stored log_likelihood is per cell, and leaving out a whole cell of exchangeable
    episodes is a leave-many-out that PSIS handles badly (high Pareto k for cells holding
    several restrictions); forecasts are per episode, so this is the LOO that matters.
    """
    ll, weights = episode_log_likelihood(tree)
    tree = xr.DataTree.from_dict({
        "posterior": tree.posterior.to_dataset()[["beta_severity"]],
        "log_likelihood": xr.Dataset({"restriction": (("chain", "draw", "pair"), ll)}),
    })
    loo = _loo(tree)
    summary = _loo_summary(loo, weights)
    flat = ll.reshape(-1, ll.shape[-1])
    lpd_i = logsumexp(flat, axis=0) - np.log(flat.shape[0])
    summary["p_loo"] = float(np.sum(weights * (lpd_i - np.asarray(loo.elpd_i).ravel())))
    summary["unit"] = "episode"
    return summary


def posterior_predictive_check(tree: xr.DataTree, prob: float = 0.9) -> dict[str, Any]:
    """Observed level shares per bloc and per intel type vs the posterior predictive."""
    if "posterior_predictive" not in tree.children or OBSERVED not in tree.posterior_predictive:
        return {}
    obs = tree.observed_data[OBSERVED].values
    pred = tree.posterior_predictive[OBSERVED].values.reshape(-1, *obs.shape)
    const = tree.constant_data
    p_idx = const["partner_idx"].values
    groupings = {
        "bloc": (const["partner_bloc"].values[p_idx], list(tree.posterior.coords["bloc"].values)),
        "intel_type": (const["type_idx"].values, list(tree.posterior.coords["intel_type"].values)),
    }
    lo_q, hi_q = (1 - prob) / 2, 1 - (1 - prob) / 2
    out: dict[str, Any] = {"prob": prob, "flags": []}
    for name, (groups, labels) in groupings.items():
        o = _level_shares(obs.astype(float), groups, len(labels))
        p = _level_shares(pred.astype(float), groups, len(labels))
        table = {}
        for g, label in enumerate(labels):
            if not np.isfinite(o[g]).all():
                continue  # no episodes in this group
            rows = {}
            for k in range(o.shape[-1]):
                lo, hi = np.nanquantile(p[:, g, k], [lo_q, hi_q])
                outside = bool(o[g, k] < lo - 1e-12 or o[g, k] > hi + 1e-12)
                rows[str(k)] = {"observed": float(o[g, k]), "mean": float(np.nanmean(p[:, g, k])),
                                "lower": float(lo), "upper": float(hi), "outside": outside}
                if outside:
                    out["flags"].append(f"{name}={label} level {k}: observed share "
                                        f"{o[g, k]:.3f} outside [{lo:.3f}, {hi:.3f}]")
            table[str(label)] = rows
        out[name] = table
    return out


def diagnose(tree: xr.DataTree, worst: int = 5) -> dict[str, Any]:
    """Convergence, efficiency, PSIS-LOO and predictive checks of a fit (JSON-serialisable)."""
    t0 = time.perf_counter()
    summary = summary_table(tree)
    undefined = ~np.isfinite(summary["r_hat"].to_numpy(dtype=float))
    # identical in every draw of every chain: zero by construction (a partner alone in its
    # bloc has no deviation), not a diagnostic; anything else without an R-hat is frozen
    fixed = summary["sd"].to_numpy(dtype=float) <= 1e-12
    constant = sorted(summary.index[undefined & fixed])
    frozen = sorted(summary.index[undefined & ~fixed])
    summary = summary[~undefined]
    rel_mcse = summary["mcse_mean"] / summary["sd"].replace(0, np.nan)
    stats = tree.sample_stats
    diag: dict[str, Any] = {
        "n_parameters": int(len(summary)),
        "constant": constant,
        "frozen": frozen,
        "chains": int(tree.posterior.sizes["chain"]),
        "draws": int(tree.posterior.sizes["draw"]),
        "max_rhat": _float(summary["r_hat"].max()),
        "min_ess_bulk": _float(summary["ess_bulk"].min()),
        "min_ess_tail": _float(summary["ess_tail"].min()),
        "max_mcse_relative": _float(rel_mcse.max()),
        "worst": {
            "rhat": {k: float(v) for k, v in summary["r_hat"].nlargest(worst).items()},
            "ess_bulk": {k: float(v) for k, v in summary["ess_bulk"].nsmallest(worst).items()},
            "ess_tail": {k: float(v) for k, v in summary["ess_tail"].nsmallest(worst).items()},
        },
        "divergences": int(stats["diverging"].sum()) if "diverging" in stats else None,
        "treedepth_fraction": _treedepth_fraction(stats),
        "ebfmi": _ebfmi(stats["energy"].values) if "energy" in stats else [],
    }
    diag["min_ebfmi"] = min(diag["ebfmi"]) if diag["ebfmi"] else None
    if OBSERVED in tree.get("observed_data", xr.Dataset()) and "constant_data" in tree.children:
        diag["loo"] = _loo_or_error(lambda: episode_loo(tree))
    if "log_likelihood" in tree.children:
        diag["loo_cells"] = _loo_or_error(lambda: _loo_summary(_loo(tree), None))
    diag["ppc"] = posterior_predictive_check(tree)
    timings = json.loads(tree.attrs.get("timings", "{}"))
    timings["diagnostics"] = time.perf_counter() - t0
    diag["timings"] = timings
    sampling = timings.get("sampling")
    if sampling and diag["min_ess_bulk"]:
        diag["min_ess_bulk_per_second"] = diag["min_ess_bulk"] / sampling
    diag["parameterization"] = json.loads(tree.attrs.get("parameterization", "{}"))
    return diag
