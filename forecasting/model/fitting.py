"""Sample the model, diagnose the fit, and gate it (pass / fail, with reasons).

`fit_and_diagnose` is the single entry point of the CLI and the refit worker: episodes in,
a `FitResult` (posterior tree, diagnostics, verdict, identity) out.
"""

from __future__ import annotations

import os

# numpyro runs one chain per XLA device; this must be set before jax is first imported.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import contextlib  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pymc as pm  # noqa: E402
import xarray as xr  # noqa: E402
from scipy.special import expit, log_expit, logsumexp  # noqa: E402

from forecasting.domain.cells import Cells, aggregate, empty_cells  # noqa: E402
from forecasting.domain.codebook import Codebook  # noqa: E402
from forecasting.model.likelihood import register_jax  # noqa: E402
from forecasting.model.priors import PriorSet  # noqa: E402
from forecasting.model.pymc_model import (  # noqa: E402
    ALIGNMENT_CENTER,
    SEVERITY_CENTER,
    build_model,
    log_multinomial_coef,
)
from forecasting.settings import GateThresholds, SamplerSettings  # noqa: E402

log = logging.getLogger(__name__)

SAMPLERS = ("nutpie", "numpyro", "pymc")
PRIOR_PREDICTIVE_DRAWS = 500
OBSERVED = "level_counts"
# Posterior variables the gate looks at: every sampled or derived quantity (free variables,
# Deterministics of the contract). Non-centred `*_z` variables are included: if they mix
# badly, the effects built from them do too.
_COMPILED: dict[str, Any] = {}  # per-process cache: model structure key -> nutpie compiled model


# -- fitting -------------------------------------------------------------------------------


def _structure_key(model: pm.Model) -> str:
    """What the compiled graph depends on: everything but the data values."""
    config = dict(getattr(model, "forecast_config", {}))
    shapes = {v.name: v.get_value().ndim for v in model.data_vars}
    payload = json.dumps({"config": config, "ranks": shapes}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _data_values(model: pm.Model) -> dict[str, np.ndarray]:
    return {v.name: v.get_value() for v in model.data_vars}


def _cores(chains: int) -> int:
    return max(1, min(chains, os.cpu_count() or 1))


def compile_nutpie(model: pm.Model):
    """Compile `model` for nutpie once per process and structure (later fits swap the data)."""
    import nutpie

    key = _structure_key(model)
    if key not in _COMPILED:
        _COMPILED[key] = nutpie.compile_pymc_model(model)
    return _COMPILED[key]


def warm_up(episodes: pd.DataFrame, codebook: Codebook, priors: PriorSet,
            sampler_settings: SamplerSettings) -> float:
    """Compile the model the next fit of these episodes will need; returns the seconds spent.

    A refit worker calls this at start, so that its first refit does not pay the compile.
    """
    if sampler_settings.sampler != "nutpie" or len(episodes) == 0:
        return 0.0
    t0 = time.perf_counter()
    compile_nutpie(build_model(aggregate(episodes, codebook), priors))
    return time.perf_counter() - t0


def _sample_nutpie(model, settings: SamplerSettings, progress: bool, timings: dict):
    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata

    t0 = time.perf_counter()
    compiled = _COMPILED.get(_structure_key(model))
    if compiled is None:
        compiled = compile_nutpie(model)
        timings["compile_cached"] = False
    else:
        # data the likelihood does not read (the counts, kept for observed_data) are not
        # part of the compiled model
        known = {var.name for var in compiled.shared_var_keys}
        compiled = compiled.with_data(**{k: v for k, v in _data_values(model).items()
                                         if k in known})
        timings["compile_cached"] = True
    timings["compile"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dt = nutpie.sample(compiled, draws=settings.draws, tune=settings.tune,
                       chains=settings.chains, cores=_cores(settings.chains),
                       seed=settings.seed, target_accept=settings.target_accept,
                       progress_bar=progress, save_warmup=False)
    timings["sampling"] = time.perf_counter() - t0
    patch_nutpie_idata(dt, model, sampling_time=timings["sampling"])
    for group in [g for g in dt.children if g.startswith("warmup")]:
        del dt[group]
    return dt


def _sample_pm(model, settings: SamplerSettings, progress: bool, timings: dict):
    if settings.sampler == "numpyro":
        register_jax()
    t0 = time.perf_counter()
    with model, warnings.catch_warnings():
        # jax/numpyro emit deprecation chatter of their own on some versions
        warnings.simplefilter("ignore", DeprecationWarning)
        dt = pm.sample(draws=settings.draws, tune=settings.tune, chains=settings.chains,
                       cores=_cores(settings.chains), random_seed=settings.seed,
                       nuts_sampler=settings.sampler, progressbar=progress,
                       nuts={"target_accept": settings.target_accept},
                       compute_convergence_checks=False)
    total = time.perf_counter() - t0
    sampling = float(dt.posterior.attrs.get("sampling_time", total))
    timings["sampling"] = sampling
    # pm.sample compiles (pymc) or traces and JITs (numpyro) on every call
    timings["compile"] = max(total - sampling, 0.0)
    timings["compile_cached"] = False
    return dt


@contextlib.contextmanager
def _quiet_prior_sampling():
    """The likelihood is a Potential over the cells (forecasting.model.pymc_model): prior draws
    rightly ignore it, and PyMC says so on every call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*Potential", category=UserWarning)
        yield


def _add_observed_data(dt: xr.DataTree, model: pm.Model) -> None:
    """The observed level counts per cell (group observed_data), which diagnostics, plots
    and the per-episode LOO read; the likelihood itself is a Potential, not an observed
    variable, so the samplers do not add them."""
    if "counts" not in model.named_vars:
        return
    if "observed_data" in dt.children and OBSERVED in dt["observed_data"]:
        return
    dt["observed_data"] = xr.Dataset(
        {OBSERVED: (("cell", "level"), np.asarray(model["counts"].get_value()))},
        coords={"cell": np.asarray(model.coords["cell"]),
                "level": np.asarray(model.coords["level"])})


def fit(model: pm.Model, sampler_settings: SamplerSettings, progress: bool = False,
        prior_draws: int = PRIOR_PREDICTIVE_DRAWS, extras: bool = True) -> xr.DataTree:
    """Sample `model` and return the full tree.

    Groups: posterior, sample_stats, observed_data, constant_data, and (`extras=True`)
    log_likelihood, log_prior, prior, prior_predictive, posterior_predictive. Timings (s)
    and the model's configuration are in the root attrs.
    """
    settings = sampler_settings
    if settings.sampler not in SAMPLERS:
        raise ValueError(f"Requested sampler '{settings.sampler}' but it must be one of "
                         f"{list(SAMPLERS)}")
    timings: dict[str, Any] = {}
    t_start = time.perf_counter()
    if settings.sampler == "nutpie":
        dt = _sample_nutpie(model, settings, progress, timings)
    else:
        dt = _sample_pm(model, settings, progress, timings)
    _add_observed_data(dt, model)
    if extras:
        # log likelihood and posterior predictive in numpy from the draws (no PyMC function
        # to compile: they took 6 s and 10 s of every refit on the seed data)
        t0 = time.perf_counter()
        add_log_likelihood(dt)
        timings["log_likelihood"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pm.stats.compute_log_prior(dt, model=model, progressbar=False)
        timings["log_prior"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        dt["prior"] = _prior_draws(model, prior_draws, settings.seed + 1)
        dt["prior_predictive"] = replicate_counts(dt["prior"].to_dataset(), dt,
                                                  seed=settings.seed + 1)
        timings["prior_predictive"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        add_posterior_predictive(dt, seed=settings.seed + 2)
        timings["posterior_predictive"] = time.perf_counter() - t0
    timings["fit_total"] = time.perf_counter() - t_start
    config = getattr(model, "forecast_config", {})
    dt.attrs.update({
        "severity_center": SEVERITY_CENTER,
        "alignment_center": ALIGNMENT_CENTER,
        "sampler": json.dumps(asdict(settings), sort_keys=True),
        "parameterization": json.dumps(config.get("parameterization", {}), sort_keys=True),
        "priors_hash": config.get("priors_hash", ""),
        "timings": json.dumps(timings, sort_keys=True),
    })
    return dt


_PRIORS: dict[tuple, xr.Dataset] = {}  # per-process cache: (structure, draws, seed) -> prior


def _prior_draws(model: pm.Model, draws: int, seed: int) -> xr.Dataset:
    """Prior draws of every parameter (group `prior`); they do not depend on the data.

    The likelihood is a Potential, which PyMC cannot draw from: `replicate_counts`
    derives the prior predictive from these draws. Cached per model structure, so that a
    refit in the same process pays nothing.
    """
    key = (_structure_key(model), draws, seed)
    if key not in _PRIORS:
        names = [v.name for v in model.free_RVs + model.deterministics]
        with _quiet_prior_sampling():
            prior = pm.sample_prior_predictive(draws=draws, model=model, var_names=names,
                                               random_seed=seed)
        _PRIORS[key] = prior["prior"].to_dataset()
    return _PRIORS[key]


def cell_level_probabilities(dt: xr.DataTree, params: xr.Dataset | None = None) -> np.ndarray:
    """P(level = k) per draw and cell, (chain, draw, cell, level), as the model defines it.

    From the posterior draws, or from `params` (e.g. prior draws) with the same names.
    """
    post = dt.posterior if params is None else params
    const = dt.constant_data
    eta = (post["pt_eff"].values[..., const["partner_idx"].values, const["type_idx"].values]
           + post["trigger_eff"].values[..., const["trigger_idx"].values]
           + post["beta_severity"].values[..., None]
           * (const["severity"].values - SEVERITY_CENTER)
           + post["beta_alignment"].values[..., None]
           * (const["alignment"].values - ALIGNMENT_CENTER))
    c = post["cutpoints"].values[..., None, :]  # chain, draw, 1, cutpoint
    cdf = expit(c - eta[..., None])
    probs = np.concatenate([cdf[..., :1], np.diff(cdf, axis=-1),
                            expit(eta[..., None] - c[..., 2:])], axis=-1)
    return np.clip(probs, 1e-12, 1.0)  # far in the tails np.diff can round to 0: no log(0)


def _observed_counts(dt: xr.DataTree) -> xr.DataArray:
    return dt.observed_data[OBSERVED].transpose("cell", "level")


def add_log_likelihood(dt: xr.DataTree) -> None:
    """The per-cell multinomial log likelihood (the model's density), as group log_likelihood.

    Computed in numpy from the posterior draws: the same values pm.compute_log_likelihood
    gives, without compiling a PyMC function on every fit.
    """
    counts = _observed_counts(dt)
    log_coef = log_multinomial_coef(counts.values)
    probs = cell_level_probabilities(dt)
    ll = log_coef + np.einsum("...cl,cl->...c", np.log(probs), counts.values.astype(float))
    post = dt.posterior
    dt["log_likelihood"] = xr.Dataset(
        {OBSERVED: (("chain", "draw", "cell"), ll)},
        coords={"chain": post.coords["chain"].values, "draw": post.coords["draw"].values,
                "cell": counts.coords["cell"].values})


def replicate_counts(params: xr.Dataset, dt: xr.DataTree, seed: int = 0) -> xr.Dataset:
    """Level counts per cell replicated from every draw of `params` (numpy multinomial)."""
    counts = _observed_counts(dt)
    probs = cell_level_probabilities(dt, params)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    rng = np.random.default_rng(seed)
    n = np.broadcast_to(counts.values.sum(axis=-1), probs.shape[:-1])
    rep = rng.multinomial(n, probs)
    return xr.Dataset(
        {OBSERVED: (("chain", "draw", "cell", "level"), rep)},
        coords={"chain": params.coords["chain"].values, "draw": params.coords["draw"].values,
                "cell": counts.coords["cell"].values, "level": counts.coords["level"].values})


def add_posterior_predictive(dt: xr.DataTree, seed: int = 0) -> None:
    """Replicated level counts per cell and draw, as group posterior_predictive."""
    dt["posterior_predictive"] = replicate_counts(dt.posterior.to_dataset(), dt, seed)


# -- diagnostics ---------------------------------------------------------------------------


def _posterior_sd(posterior: xr.DataTree) -> pd.Series:
    """Posterior sd of every scalar entry, labelled as az.summary labels them."""
    out = {}
    for name, da in posterior.data_vars.items():
        sd = da.std(("chain", "draw"))
        if sd.ndim == 0:
            out[name] = float(sd)
            continue
        for idx, value in zip(np.ndindex(sd.shape), sd.values.ravel(), strict=True):
            labels = ", ".join(str(sd.coords[d].values[i]) for d, i in zip(sd.dims, idx,
                                                                          strict=True))
            out[f"{name}[{labels}]"] = float(value)
    return pd.Series(out)


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


def episode_log_likelihood(dt: xr.DataTree) -> tuple[np.ndarray, np.ndarray]:
    """log P(level) of every observed (cell, level) pair per draw, and its episode count.

    Episodes of one cell with the same level are exchangeable, so one column stands for
    all of them: leaving one of them out is what per-episode LOO does.
    """
    post, const = dt.posterior, dt.constant_data
    counts = dt.observed_data[OBSERVED].values
    cell, level = np.nonzero(counts)
    p_idx, t_idx = const["partner_idx"].values[cell], const["type_idx"].values[cell]
    eta = (post["pt_eff"].values[..., p_idx, t_idx]
           + post["trigger_eff"].values[..., const["trigger_idx"].values[cell]]
           + post["beta_severity"].values[..., None]
           * (const["severity"].values[cell] - SEVERITY_CENTER)
           + post["beta_alignment"].values[..., None]
           * (const["alignment"].values[cell] - ALIGNMENT_CENTER))
    c = post["cutpoints"].values  # chain, draw, cutpoint
    upper = np.where(level < 3, np.take(c, np.minimum(level, 2), axis=-1) - eta, np.inf)
    lower = np.where(level > 0, np.take(c, np.maximum(level - 1, 0), axis=-1) - eta, -np.inf)
    # log(F(upper) - F(lower)) = log F(upper) + log1p(-exp(logF(lower) - logF(upper)))
    log_up, log_lo = log_expit(upper), log_expit(lower)
    with np.errstate(divide="ignore"):
        ll = log_up + np.log1p(-np.exp(np.minimum(log_lo - log_up, -1e-12)))
    return ll, counts[cell, level]


def _loo_or_error(compute) -> dict[str, Any]:
    """A LOO summary, or why there is none: PSIS raises when a tail of importance weights has
    no spread, as when chains never moved. Without `max_pareto_k` the gate fails the fit."""
    try:
        return compute()
    except ValueError as exc:
        return {"error": f"PSIS-LOO could not be computed: {exc}"}


def episode_loo(dt: xr.DataTree) -> dict[str, Any]:
    """PSIS-LOO leaving out one episode at a time (the gate's LOO).

    The stored log_likelihood is per cell, and leaving out a whole cell of exchangeable
    episodes is a leave-many-out that PSIS handles badly (high Pareto k for cells holding
    several restrictions); forecasts are per episode, so this is the LOO that matters.
    """
    ll, weights = episode_log_likelihood(dt)
    tree = xr.DataTree.from_dict({
        "posterior": dt.posterior.to_dataset()[["beta_severity"]],
        "log_likelihood": xr.Dataset({"restriction": (("chain", "draw", "pair"), ll)}),
    })
    loo = _loo(tree)
    summary = _loo_summary(loo, weights)
    flat = ll.reshape(-1, ll.shape[-1])
    lpd_i = logsumexp(flat, axis=0) - np.log(flat.shape[0])
    summary["p_loo"] = float(np.sum(weights * (lpd_i - np.asarray(loo.elpd_i).ravel())))
    summary["unit"] = "episode"
    return summary


def posterior_predictive_check(dt: xr.DataTree, prob: float = 0.9) -> dict[str, Any]:
    """Observed level shares per bloc and per intel type vs the posterior predictive."""
    if "posterior_predictive" not in dt.children or OBSERVED not in dt.posterior_predictive:
        return {}
    obs = dt.observed_data[OBSERVED].values
    pred = dt.posterior_predictive[OBSERVED].values.reshape(-1, *obs.shape)
    const = dt.constant_data
    p_idx = const["partner_idx"].values
    groupings = {
        "bloc": (const["partner_bloc"].values[p_idx], list(dt.posterior.coords["bloc"].values)),
        "intel_type": (const["type_idx"].values, list(dt.posterior.coords["intel_type"].values)),
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


def diagnose(dt: xr.DataTree, worst: int = 5) -> dict[str, Any]:
    """Convergence, efficiency, PSIS-LOO and predictive checks of a fit (JSON-serialisable)."""
    t0 = time.perf_counter()
    summary = az.summary(dt, kind="diagnostics", round_to="none")
    summary = summary[np.isfinite(summary["r_hat"].astype(float))]  # constant entries (none so far)
    sd = _posterior_sd(dt.posterior).reindex(summary.index).replace(0, np.nan)
    rel_mcse = summary["mcse_mean"].astype(float) / sd
    stats = dt.sample_stats
    diag: dict[str, Any] = {
        "n_parameters": int(len(summary)),
        "chains": int(dt.posterior.sizes["chain"]),
        "draws": int(dt.posterior.sizes["draw"]),
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
    if OBSERVED in dt.get("observed_data", xr.Dataset()) and "constant_data" in dt.children:
        diag["loo"] = _loo_or_error(lambda: episode_loo(dt))
    if "log_likelihood" in dt.children:
        diag["loo_cells"] = _loo_or_error(lambda: _loo_summary(_loo(dt), None))
    diag["ppc"] = posterior_predictive_check(dt)
    timings = json.loads(dt.attrs.get("timings", "{}"))
    timings["diagnostics"] = time.perf_counter() - t0
    diag["timings"] = timings
    sampling = timings.get("sampling")
    if sampling and diag["min_ess_bulk"]:
        diag["min_ess_bulk_per_second"] = diag["min_ess_bulk"] / sampling
    diag["parameterization"] = json.loads(dt.attrs.get("parameterization", "{}"))
    return diag


@dataclass(frozen=True)
class Verdict:
    passed: bool
    verdict: str
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "verdict": self.verdict, "reasons": list(self.reasons)}


def gate(diagnostics: dict[str, Any], thresholds: GateThresholds) -> Verdict:
    """Pass only if every check meets its threshold; each failure names check, value, limit."""
    reasons: list[str] = []

    def check(name: str, value, ok, limit: str):
        if value is None:
            reasons.append(f"{name}: not available (needed {limit})")
        elif not ok(value):
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            reasons.append(f"{name}: {shown} (needed {limit})")

    d = diagnostics
    t = thresholds
    check("max_rhat", d.get("max_rhat"), lambda v: v <= t.max_rhat, f"<= {t.max_rhat}")
    check("min_ess_bulk", d.get("min_ess_bulk"), lambda v: v >= t.min_ess_bulk,
          f">= {t.min_ess_bulk:g}")
    check("min_ess_tail", d.get("min_ess_tail"), lambda v: v >= t.min_ess_tail,
          f">= {t.min_ess_tail:g}")
    check("divergences", d.get("divergences"), lambda v: v <= t.max_divergences,
          f"<= {t.max_divergences}")
    check("min_ebfmi", d.get("min_ebfmi"), lambda v: v >= t.min_ebfmi, f">= {t.min_ebfmi}")
    check("treedepth_fraction", d.get("treedepth_fraction"),
          lambda v: v <= t.max_treedepth_fraction, f"<= {t.max_treedepth_fraction}")
    loo = d.get("loo") or {}
    check("max_pareto_k", loo.get("max_pareto_k"), lambda v: v <= t.max_pareto_k,
          f"<= {t.max_pareto_k}")
    passed = not reasons
    return Verdict(passed=passed, verdict="pass" if passed else "fail", reasons=reasons)


# -- prior predictive ----------------------------------------------------------------------


def prior_predictive(cells_or_codebook: Cells | Codebook, priors: PriorSet,
                     draws: int = PRIOR_PREDICTIVE_DRAWS, seed: int = 0,
                     ) -> dict[str, Any]:
    """What the priors imply before any data: P(any restriction) and level frequencies.

    Scenarios are the cells' predictor sets weighted by their episodes when cells are
    given, else every partner x type x trigger x severity x alignment equally. For each
    prior draw one scenario is drawn, so the spread mixes parameter and scenario
    uncertainty, as a forecast for an arbitrary cell would.
    """
    cells = (cells_or_codebook if isinstance(cells_or_codebook, Cells)
             else empty_cells(cells_or_codebook))
    model = build_model(cells, priors)
    names = ["cutpoints", "pt_eff", "trigger_eff", "beta_severity", "beta_alignment"]
    # draws straight from the prior graph: no data, no likelihood
    values = pm.draw([model[n] for n in names], draws=draws, random_seed=seed)
    d = dict(zip(names, values, strict=True))
    rng = np.random.default_rng(seed + 1)
    if cells.n_episodes > 0:
        weight = cells.n_per_cell / cells.n_per_cell.sum()
        pick = rng.choice(cells.n_cells, draws, p=weight)
        p_i, t_i, tt_i = cells.partner_idx[pick], cells.type_idx[pick], cells.trigger_idx[pick]
        sev, ali = cells.severity[pick], cells.alignment[pick]
    else:
        c = cells.coords
        p_i = rng.integers(0, len(c["partner"]), draws)
        t_i = rng.integers(0, len(c["intel_type"]), draws)
        tt_i = rng.integers(0, len(c["trigger_type"]), draws)
        sev, ali = rng.integers(0, 4, draws), rng.integers(0, 4, draws)
    rows = np.arange(draws)
    eta = (d["pt_eff"][rows, p_i, t_i] + d["trigger_eff"][rows, tt_i]
           + d["beta_severity"] * (sev - SEVERITY_CENTER)
           + d["beta_alignment"] * (ali - ALIGNMENT_CENTER))
    cdf = expit(d["cutpoints"] - eta[:, None])
    probs = np.diff(np.hstack([np.zeros((draws, 1)), cdf, np.ones((draws, 1))]), axis=1)
    # level frequencies over the whole scenario set, per draw
    p_any = 1.0 - probs[:, 0]
    qs = [0.05, 0.25, 0.5, 0.75, 0.95]

    def describe(x):
        return {"mean": float(np.mean(x)),
                "quantiles": {f"{q:g}": float(v) for q, v in zip(qs, np.quantile(x, qs),
                                                               strict=True)}}

    return {
        "draws": int(draws),
        "priors_hash": priors.content_hash,
        "scenarios": "data cells" if cells.n_episodes > 0 else "whole vocabulary",
        "any_restriction": describe(p_any),
        "levels": {str(k): describe(probs[:, k]) for k in range(probs.shape[1])},
        "samples": {"any_restriction": p_any.round(5).tolist(),
                    "levels": probs.round(5).tolist()},
    }


def plot_prior_predictive(summary: dict[str, Any], path: Path | str) -> Path:
    """Histogram of P(any restriction) and level frequencies implied by the priors, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.hist(summary["samples"]["any_restriction"], bins=30, range=(0, 1), color="C0")
    ax1.set_xlabel("P(any restriction)")
    ax1.set_ylabel("prior draws")
    ax1.set_title("Implied by the priors")
    levels = np.asarray(summary["samples"]["levels"])
    ax2.boxplot([levels[:, k] for k in range(levels.shape[1])], whis=(5, 95), showfliers=False)
    ax2.set_xticks(range(1, levels.shape[1] + 1), [str(k) for k in range(levels.shape[1])])
    ax2.set_xlabel("restriction level")
    ax2.set_ylabel("probability (5-95%)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# -- entry point ---------------------------------------------------------------------------


@dataclass
class FitResult:
    idata: xr.DataTree
    diagnostics: dict[str, Any]
    verdict: Verdict
    model_config: dict[str, Any]
    priors: dict[str, Any]
    priors_hash: str
    data_fingerprint: str
    n_episodes: int
    sampler: dict[str, Any]
    timings: dict[str, Any]
    codebook_version: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def metadata(self) -> dict[str, Any]:
        """The metadata `forecasting.registry.Registry.save` expects."""
        return {
            "episodes": self.n_episodes,
            "data_hash": self.data_fingerprint,
            "priors_hash": self.priors_hash,
            "priors": self.priors,
            "model_config": self.model_config,
            "sampler": self.sampler,
            "verdict": self.verdict.verdict,
            "reasons": list(self.verdict.reasons),
            "diagnostics": self.diagnostics,
            "timings": self.timings,
            "codebook_version": self.codebook_version,
        }


def fit_and_diagnose(episodes: pd.DataFrame, codebook: Codebook, priors: PriorSet,
                     sampler_settings: SamplerSettings, gate_thresholds: GateThresholds,
                     parameterization: dict[str, str] | str | None = None,
                     progress: bool = False) -> FitResult:
    """Episodes -> cells -> model -> fit -> diagnostics -> verdict, with the fit's identity."""
    t0 = time.perf_counter()
    cells = aggregate(episodes, codebook)
    if cells.n_episodes == 0:
        raise ValueError("no episodes to fit; import episodes first")
    model = build_model(cells, priors, parameterization)
    t_build = time.perf_counter() - t0
    dt = fit(model, sampler_settings, progress=progress)
    diagnostics = diagnose(dt)
    verdict = gate(diagnostics, gate_thresholds)
    config = dict(model.forecast_config)
    config.pop("coords", None)  # the codebook version names them
    timings = dict(diagnostics["timings"]) | {"build": t_build,
                                              "total": time.perf_counter() - t0}
    dt.attrs.update({"data_fingerprint": cells.fingerprint, "n_episodes": cells.n_episodes,
                     "verdict": verdict.verdict})
    log.info("fit %s: %d episodes, %d cells, verdict %s %s", config["parameterization"],
             cells.n_episodes, cells.n_cells, verdict.verdict, verdict.reasons)
    return FitResult(
        idata=dt, diagnostics=diagnostics, verdict=verdict, model_config=config,
        priors=priors.to_dict(), priors_hash=priors.content_hash,
        data_fingerprint=cells.fingerprint, n_episodes=cells.n_episodes,
        sampler=asdict(sampler_settings), timings=timings,
        codebook_version=cells.codebook_version)
