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
from arviz_stats.validate import validate_ci_prob
from scipy import sparse
from scipy.special import logsumexp

from forecasting.model import convergence, psis
from forecasting.model.predictive import (
    OBSERVED,
    episode_log_likelihood,
    evenly,
    extras_max_draws,
    one_episode_per_cell,
    thin,
    trigger_log_likelihood,
)


def _entries(ds: xr.Dataset) -> tuple[np.ndarray, list[str]]:
    """Every scalar entry of every variable as rows of (entries, chain, draw), labelled
    "name[coord, coord]"."""
    rows, labels = [], []
    for var, da in ds.data_vars.items():
        da = da.transpose("chain", "draw", ...)
        values = np.asarray(da.values, dtype=float)
        extra = da.dims[2:]
        rows.append(np.moveaxis(values.reshape(*values.shape[:2], -1), -1, 0))
        if not extra:
            labels.append(var)
            continue
        names = [[str(v) for v in da.coords[d].values] for d in extra]  # looked up once
        for idx in np.ndindex(values.shape[2:]):
            labels.append(f"{var}[{', '.join(n[i] for n, i in zip(names, idx, strict=True))}]")
    return np.concatenate(rows) if rows else np.empty((0, 0, 0)), labels


def summary_table(tree: xr.DataTree, var_names: list[str] | None = None) -> pd.DataFrame:
    """R-hat, bulk and tail ESS, MCSE of the mean, sd and the number of chains in which it
    never changes, of every scalar posterior entry.

    ArviZ's estimators, computed on all entries at once (forecasting.model.convergence):
    its per-entry loop was the slowest step of a refit. (az.summary of ArviZ 1.3 also
    labelled the rows of two-dimensional variables out of order, so that its labels could
    not name the worst entries.) Tail ESS at ArviZ's default probability.
    """
    posterior = tree.posterior.to_dataset()
    if var_names is not None:
        posterior = posterior[var_names]
    x, labels = _entries(posterior)
    with warnings.catch_warnings():
        # R-hat of a constant divides by zero; `diagnose` sorts such entries out
        warnings.simplefilter("ignore", RuntimeWarning)
        columns = convergence.statistics(x, validate_ci_prob(None)) | {
            "sd": x.reshape(len(x), -1).std(axis=1),
            # chains in which the entry never changes: stuck, unless it is constant everywhere
            "stuck_chains": (x.max(axis=2) == x.min(axis=2)).sum(axis=1),
        }
    return pd.DataFrame(columns, index=labels)


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


def _loo(tree: xr.DataTree) -> dict[str, Any]:
    """az.loo of a tree's log likelihood: its pointwise elpd and Pareto k and its totals."""
    with warnings.catch_warnings():
        # high Pareto k is reported through the counts, not as a warning
        warnings.simplefilter("ignore", UserWarning)
        loo = az.loo(tree, pointwise=True)
    return {"elpd_i": np.asarray(loo.elpd_i).ravel(), "pareto_k": np.asarray(loo.pareto_k).ravel(),
            "elpd": float(loo.elpd), "se": float(loo.se), "p_loo": float(loo.p)}


def _psis_loo(log_lik: np.ndarray, r_eff: float) -> dict[str, Any]:
    """`_loo` of (draws, observations) log likelihoods by forecasting.model.psis: ArviZ's
    figures, without its loop over the observations."""
    pointwise = psis.loo(np.ascontiguousarray(log_lik.T), r_eff)
    elpd, se, p_loo = psis.summary(pointwise["elpd_i"], pointwise["p_loo_i"])
    return {"elpd_i": pointwise["elpd_i"], "pareto_k": pointwise["pareto_k"],
            "elpd": elpd, "se": se, "p_loo": p_loo}


def _relative_efficiency(posterior: xr.Dataset) -> float:
    """az.loo's default r_eff: the mean ESS (method "mean") of the posterior's entries over
    the number of draws; 1 with one chain."""
    if posterior.sizes["chain"] == 1:
        return 1.0
    ess = az.ess(posterior, method="mean")
    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    return np.hstack([ess[v].values.flatten() for v in ess.data_vars]).mean() / n


def _loo_summary(loo: dict[str, Any], weights: np.ndarray | None) -> dict[str, Any]:
    k = loo["pareto_k"]
    w = np.ones_like(k) if weights is None else np.asarray(weights, dtype=float)
    if weights is None:
        elpd, se, p_loo = loo["elpd"], loo["se"], loo["p_loo"]
    else:
        elpd_i = loo["elpd_i"]
        n = w.sum()
        elpd = float(np.sum(w * elpd_i))
        se = float(np.sqrt(n * np.sum(w * (elpd_i - elpd / n) ** 2) / n))
        p_loo = loo["p_loo"]  # filled in by the caller, who knows the pointwise lpd
    bands = {"good (<=0.5)": k <= 0.5, "ok (0.5-0.7]": (k > 0.5) & (k <= 0.7),
             "bad (0.7-1]": (k > 0.7) & (k <= 1), "very bad (>1)": k > 1}
    return {"elpd": elpd, "se": se, "p_loo": p_loo, "n_points": int(w.sum()),
            "max_pareto_k": float(np.nanmax(k)),
            "pareto_k_counts": {b: int(w[m].sum()) for b, m in bands.items()}}


def _loo_or_error(compute, errors=(ValueError,)) -> dict[str, Any]:
    """A LOO summary, or why there is none: PSIS raises when a tail of importance weights has
    no spread, as when chains never moved (which the convergence checks fail)."""
    try:
        return compute()
    except errors as exc:
        return {"error": f"PSIS-LOO could not be computed: {exc}"}


def _stored_episode_log_likelihood(tree: xr.DataTree, max_draws: int | None
                                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`episode_log_likelihood` read from the fit's log_likelihood group when a cell is an
    episode and the group holds the same draws (it holds the same numbers:
    predictive.log_likelihood), else (None, None)."""
    if "log_likelihood" not in tree.children or not one_episode_per_cell(tree):
        return None, None
    stored = tree.log_likelihood[OBSERVED]
    draws = thin(tree.posterior.to_dataset()[["beta_severity"]], max_draws)
    if not all(np.array_equal(stored.coords[d].values, draws.coords[d].values)
               for d in ("chain", "draw")):
        return None, None
    return stored.transpose("chain", "draw", "cell").values, np.ones(stored.sizes["cell"])


def episode_loo(tree: xr.DataTree, max_draws: int | None = None) -> dict[str, Any]:
    """PSIS-LOO leaving out one episode at a time (reported; not a gate check).

    The stored log_likelihood is per cell, and leaving out a whole cell of exchangeable
    episodes is a leave-many-out that PSIS handles badly (high Pareto k for cells holding
    several restrictions). With the cluster effects (model revision 3) an episode can carry
    most of what its reaction effect learns, so its Pareto k is high: that says PSIS is
    unreliable for that leave-one-out, not that the fit is unhealthy.
    """
    ll, weights = _stored_episode_log_likelihood(tree, max_draws)
    if ll is None:
        ll, weights = episode_log_likelihood(tree, max_draws)
    # r_eff as az.loo takes it from a posterior of beta_severity alone
    r_eff = _relative_efficiency(thin(tree.posterior.to_dataset()[["beta_severity"]], max_draws))
    flat = ll.reshape(-1, ll.shape[-1])
    loo = _psis_loo(flat, r_eff)
    summary = _loo_summary(loo, weights)
    lpd_i = logsumexp(flat, axis=0) - np.log(flat.shape[0])
    summary["p_loo"] = float(np.sum(weights * (lpd_i - loo["elpd_i"])))
    summary["unit"] = "episode"
    summary["draws"] = int(flat.shape[0])
    return summary


# Leave-one-trigger-out: draws used (thinned evenly; the quadrature costs ~6 ms per draw on
# the seed data) and the Pareto k above which a trigger is influential (PSIS's threshold).
TRIGGER_LOO_DRAWS = 400
INFLUENTIAL_PARETO_K = 0.7


def trigger_loo(tree: xr.DataTree, max_draws: int | None = TRIGGER_LOO_DRAWS,
                worst: int = 5) -> dict[str, Any]:
    """PSIS-LOO leaving out one coded trigger (all its episodes) at a time.

    The unit is predictive.trigger_log_likelihood: each trigger's episodes with its event and
    reaction effects integrated out, i.e. what the model predicts for a new event. A Pareto
    k above INFLUENTIAL_PARETO_K says the posterior without that event differs too much from
    the full one for importance sampling: the event is influential, and its fold needs an
    exact refit before its elpd can be trusted (model comparison does that). The thinned
    draws are taken as independent (relative efficiency 1).
    """
    ll, labels = trigger_log_likelihood(tree, max_draws)
    loo = _psis_loo(ll, 1.0)  # the thinned draws as one chain of independent draws
    summary = _loo_summary(loo, None)
    k = loo["pareto_k"]
    order = np.argsort(-np.nan_to_num(k, nan=np.inf), kind="stable")
    influential = [int(i) for i in order if not k[i] <= INFLUENTIAL_PARETO_K]
    summary.update({
        "unit": "trigger",
        "draws": int(len(ll)),
        "k_threshold": INFLUENTIAL_PARETO_K,
        "n_influential": len(influential),
        "influential": {labels[i]: _float(k[i]) for i in influential},
        "worst": {labels[i]: _float(k[i]) for i in order[:worst]},
    })
    return summary


# ---- posterior predictive checks ----------------------------------------------------------
# Each check is a test quantity T(y), computed on the observed counts and on every replicated
# data set of the posterior_predictive group, with its posterior predictive p-values and the
# central PPC_PROB interval of T(y_rep). The gate (forecasting.model.gate) applies the rule.
PPC_PROB = 0.99
# Groups with fewer episodes are exempt; they are pooled into one group per family (itself
# checked when it reaches this size), so that their episodes still count.
PPC_MIN_GROUP_EPISODES = 20
PPC_MAX_DRAWS = 4000  # replicated data sets used (thinned evenly beyond)
_PPC_VALUES_PER_BLOCK = 20_000_000  # replicated counts per block (bounds memory)
POOLED = "(pooled)"


def _check(observed: float, replicated: np.ndarray, prob: float, scale: float = 1.0
           ) -> dict[str, Any]:
    """T(y) against T(y_rep) over the replicated data sets.

    p_greater = P(T(y_rep) >= T(y)), p_less = P(T(y_rep) <= T(y)); p = min(1, 2 min(both)) is
    the two-sided p-value the gate reads (ties count on both sides, so a discrete T with
    many ties is never extreme by accident). `scale` turns counts into shares for reporting;
    the comparison itself is on exact counts.
    """
    rep = np.asarray(replicated, dtype=float)
    tie = 1e-9 * max(1.0, abs(observed))  # a ratio computed in another order is still a tie
    p_greater = float(np.mean(rep >= observed - tie))
    p_less = float(np.mean(rep <= observed + tie))
    lo, hi = np.quantile(rep, [(1 - prob) / 2, (1 + prob) / 2], method="inverted_cdf")
    return {"observed": float(observed) * scale, "mean": float(rep.mean()) * scale,
            "lower": float(lo) * scale, "upper": float(hi) * scale,
            "p_greater": p_greater, "p_less": p_less,
            "p": min(1.0, 2 * min(p_greater, p_less))}


def _families(tree: xr.DataTree) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per grouping: the group of every cell and the groups' labels."""
    const = tree.constant_data
    coords = tree.posterior.coords
    p_idx = const["partner_idx"].values
    families = {
        "bloc": (const["partner_bloc"].values[p_idx], [str(b) for b in coords["bloc"].values]),
        "intel_type": (const["type_idx"].values, [str(t) for t in coords["intel_type"].values]),
        "partner": (p_idx, [str(p) for p in coords["partner"].values]),
    }
    if "trigger_year" in const and "event_idx" in const:
        year = const["trigger_year"].values.astype(float)[const["event_idx"].values]
        decade = np.where(np.isfinite(year), np.floor(np.nan_to_num(year) / 10) * 10, -1)
        labels = sorted({int(d) for d in decade})
        families["decade"] = (np.searchsorted(labels, decade),
                              [f"{d}s" if d >= 0 else "undated" for d in labels])
    return families


def _group_matrix(groups: np.ndarray, n_groups: int, n_episodes: np.ndarray, minimum: int
                  ) -> tuple[np.ndarray, np.ndarray, list[int], bool]:
    """One-hot (cell, group) with a last column pooling the small groups (when there are two
    or more); episodes per column; the small groups; whether they were pooled."""
    onehot = np.zeros((len(groups), n_groups + 1))
    onehot[np.arange(len(groups)), groups] = 1.0
    per_group = n_episodes @ onehot[:, :n_groups]
    small = [g for g in range(n_groups) if 0 < per_group[g] < minimum]
    pooled = len(small) >= 2
    if pooled:
        onehot[:, n_groups] = onehot[:, small].sum(axis=1)
    return onehot, n_episodes @ onehot, small, pooled


def posterior_predictive_check(tree: xr.DataTree, prob: float = PPC_PROB,
                               min_group_episodes: int = PPC_MIN_GROUP_EPISODES,
                               max_draws: int | None = PPC_MAX_DRAWS) -> dict[str, Any]:
    """Posterior predictive checks of what the forecasts depend on (JSON-serialisable).

    headline: the overall share of each level; the number of (trigger, partner) clusters
      with any restriction and the number of triggers with any restriction; the dispersion
      index (variance over mean) of the restricted episodes per cluster and per trigger.
      The last four test what revision 2 got wrong, that the episodes of one reaction are
      independent given the covariates: the dispersion index, the classical statistic for
      extra-binomial variation, is the one with power against it (docs/model.md, "The gate").
    groups: the level shares per bloc, per intel type and per partner, and the share of
      episodes restricted per decade of the trigger (constant_data trigger_year). Groups with
      fewer than `min_group_episodes` episodes are exempt, and pooled into one group.
    flags: every non-exempt check whose two-sided p-value is below 1 - prob (outside its
      interval); group_checks and group_outside count the non-exempt per-group ones.
    """
    if "posterior_predictive" not in tree.children or OBSERVED not in tree.posterior_predictive:
        return {}
    obs = tree.observed_data[OBSERVED].transpose("cell", "level").values.astype(float)
    pred = tree.posterior_predictive[OBSERVED].transpose("chain", "draw", "cell", "level")
    pred = pred.values.reshape(-1, *obs.shape)
    pred = pred[evenly(len(pred), max_draws)]
    const = tree.constant_data
    n_cell = obs.sum(axis=-1)
    n_levels = obs.shape[-1]
    clusters = {name: const[name].values for name in ("reaction_idx", "event_idx")
                if name in const}
    families = _families(tree)
    matrices = {name: _group_matrix(groups, len(labels), n_cell, min_group_episodes)
                for name, (groups, labels) in families.items()}
    # (cluster, cell) membership, sparse: 200,000 episodes make tens of thousands of clusters
    membership = {name: sparse.csr_array((np.ones(len(idx)), (idx, np.arange(len(idx)))))
                  for name, idx in clusters.items()}

    def statistics(counts: np.ndarray) -> dict[str, np.ndarray]:
        """Every test quantity of counts (..., cell, level), as counts."""
        restricted = n_cell - counts[..., 0]  # (..., cell)
        out = {"level": counts.sum(axis=-2)}  # (..., level)
        for name, member in membership.items():
            per_cluster = member @ restricted.T  # (cluster, ...)
            out[name] = (per_cluster > 0).sum(axis=0)
            mean = per_cluster.mean(axis=0)
            out[f"{name} dispersion"] = np.divide(per_cluster.var(axis=0), mean,
                                                  out=np.zeros_like(mean), where=mean > 0)
        for name, (onehot, *_) in matrices.items():
            out[name] = np.swapaxes(np.swapaxes(counts, -1, -2) @ onehot, -1, -2)  # (.., g, l)
        return out

    observed = statistics(obs)
    step = max(1, _PPC_VALUES_PER_BLOCK // obs.size)
    blocks = [statistics(pred[i:i + step].astype(float)) for i in range(0, len(pred), step)]
    replicated = {k: np.concatenate([b[k] for b in blocks]) for k in observed}
    total = float(n_cell.sum())

    headline = {}
    for k in range(n_levels):
        headline[f"share of level {k}"] = _check(observed["level"][k], replicated["level"][:, k],
                                                 prob, 1 / total)
    unit = {"reaction_idx": "clusters", "event_idx": "triggers"}
    for name in clusters:
        headline[f"{unit[name]} with any restriction"] = _check(observed[name],
                                                                replicated[name], prob)
    for name in clusters:
        headline[f"dispersion of restrictions across {unit[name]}"] = _check(
            observed[f"{name} dispersion"], replicated[f"{name} dispersion"], prob)

    groups: dict[str, Any] = {}
    for name, (_, labels) in families.items():
        _, n_group, small, pooled = matrices[name]
        table = {}
        for g, label in enumerate([*labels, POOLED]):
            n = float(n_group[g])
            if n == 0:
                continue  # no episodes in this group
            o, r = observed[name][g], replicated[name][:, g]
            if name == "decade":  # episodes restricted: all levels above 0
                checks = {"any restriction": _check(n - o[0], n - r[:, 0], prob, 1 / n)}
            else:
                checks = {f"level {k}": _check(o[k], r[:, k], prob, 1 / n)
                          for k in range(n_levels)}
            entry: dict[str, Any] = {"n_episodes": int(n), "exempt": bool(n < min_group_episodes)}
            if g == len(labels):
                entry["members"] = [labels[s] for s in small]
            elif g in small and pooled:
                entry["pooled_into"] = POOLED
            entry["checks"] = checks
            table[label] = entry
        groups[name] = table

    alpha = 1 - prob
    flags = [f"{name}: observed {row['observed']:.4g} outside [{row['lower']:.4g}, "
             f"{row['upper']:.4g}] (p = {row['p']:.3g})"
             for name, row in headline.items() if row["p"] < alpha]
    n_checks = n_outside = 0
    for family, table in groups.items():
        for label, entry in table.items():
            if entry["exempt"]:
                continue
            for quantity, row in entry["checks"].items():
                n_checks += 1
                if row["p"] < alpha:
                    n_outside += 1
                    flags.append(f"{family}={label} {quantity}: observed share "
                                 f"{row['observed']:.3f} outside [{row['lower']:.3f}, "
                                 f"{row['upper']:.3f}] (p = {row['p']:.3g})")
    return {"prob": prob, "min_group_episodes": min_group_episodes, "draws": int(len(pred)),
            "headline": headline, "groups": groups, "group_checks": n_checks,
            "group_outside": n_outside, "flags": flags}


def diagnose(tree: xr.DataTree, worst: int = 5,
             trigger_loo_draws: int | None = TRIGGER_LOO_DRAWS) -> dict[str, Any]:
    """Convergence, efficiency, PSIS-LOO (per episode, per cell, per trigger) and posterior
    predictive checks of a fit (JSON-serialisable)."""
    t0 = time.perf_counter()
    summary = summary_table(tree)
    undefined = ~np.isfinite(summary["r_hat"].to_numpy(dtype=float))
    # identical in every draw of every chain: zero by construction (a partner alone in its
    # bloc has no deviation), not a diagnostic. Anything else that never changes within a
    # chain, or has no R-hat, is frozen: a stuck chain (its R-hat may be finite, even huge)
    fixed = summary["sd"].to_numpy(dtype=float) <= 1e-12
    stuck = summary["stuck_chains"].to_numpy() > 0
    constant = sorted(summary.index[fixed])
    frozen = sorted(summary.index[(undefined | stuck) & ~fixed])
    summary = summary[~undefined & ~fixed]
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
    parts = {"diagnostics_convergence": time.perf_counter() - t0}
    has_data = (OBSERVED in tree.get("observed_data", xr.Dataset())
                and "constant_data" in tree.children)
    t1 = time.perf_counter()
    # per-episode quantities on a bounded number of draws (predictive.EXTRAS_MAX_VALUES:
    # every draw of the seed data, 200 at 200,000 episodes)
    most = extras_max_draws(tree.observed_data.sizes["cell"]) if has_data else None
    if has_data:
        diag["loo"] = _loo_or_error(lambda: episode_loo(tree, most))
    if "log_likelihood" in tree.children:
        if has_data and "elpd" in diag.get("loo", {}) and one_episode_per_cell(tree):
            # a cell is an episode (model revision 3): the per-cell LOO is the per-episode one
            diag["loo_cells"] = {**diag["loo"], "unit": "cell"}
        else:
            diag["loo_cells"] = _loo_or_error(lambda: _loo_summary(_loo(tree), None))
    parts["diagnostics_loo"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    if has_data and "event_idx" in tree.constant_data:  # coded triggers (revision 3 on)
        draws = min(trigger_loo_draws or most, most)
        diag["loo_trigger"] = _loo_or_error(lambda: trigger_loo(tree, draws),
                                            (ValueError, KeyError))
    parts["diagnostics_loo_trigger"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    diag["ppc"] = posterior_predictive_check(tree, max_draws=min(PPC_MAX_DRAWS, most or
                                                                 PPC_MAX_DRAWS))
    parts["diagnostics_ppc"] = time.perf_counter() - t1
    timings = json.loads(tree.attrs.get("timings", "{}"))
    timings["diagnostics"] = time.perf_counter() - t0
    timings.update(parts)
    diag["timings"] = timings
    sampling = timings.get("sampling")
    if sampling and diag["min_ess_bulk"]:
        diag["min_ess_bulk_per_second"] = diag["min_ess_bulk"] / sampling
    diag["parameterization"] = json.loads(tree.attrs.get("parameterization", "{}"))
    return diag
