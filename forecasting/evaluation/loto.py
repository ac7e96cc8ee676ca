"""Leave-one-trigger-out (LOTO) comparison of the served model with simpler ones.

The unit of prediction is the coded trigger: one event touches several partners and types,
and what a forecaster faces is a *new* event. For every candidate model (a name in
`pymc_model.VARIANTS`: the served "full" model, the model without cluster effects, main
effects only, cutpoints only, and any variant added there later):

1. fit it on all the episodes (`COMPARISON_SAMPLER`: 4 x 500 draws);
2. compute each trigger's log likelihood per draw with its cluster terms integrated out
   (`predictive.trigger_log_likelihood`: the predictive density of the trigger left out,
   its event and reaction effects fresh draws), as a (chain, draw, trigger) array;
3. run PSIS-LOO on it (`arviz_stats.loo`, observations = triggers);
4. refit the model without each trigger whose Pareto k exceeds `K_THRESHOLD` (0.7) and put
   the exact held-out log predictive density, log mean_s p(trigger | draw s of the refit),
   in place of the PSIS estimate (`arviz_stats.reloo` with `TriggerRefits`), highest k
   first and at most `max_refits` per model; a capped result says which triggers kept
   their PSIS estimate;
5. compare (`arviz_stats.compare` on the pointwise values): elpd_loo per model, the
   difference to the best with its standard error paired over triggers, p_loo, stacking
   weights, and the same difference against the served model.

A difference counts only when |elpd difference| >= max(2 x its SE, 4) (`RULE`); otherwise
the report says the data cannot tell the two models apart. With fewer than 100 triggers the
normal approximation behind the SE is itself rough (Sivula et al. 2025), so read a
difference near the line as no difference.

A refit without one trigger reuses the compiled model (nutpie `with_data`) whenever the
cluster slots allow (`pymc_model.cluster_capacity`) and every partner stays coded; the
parameterisation is the full-data fit's, so that it does not force a recompile either.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats import compare, loo, reloo
from arviz_stats.loo.wrapper import SamplingWrapper
from arviz_stats.utils import ELPDDataLOO
from scipy.stats import norm

from forecasting.domain.cells import aggregate, episodes_frame
from forecasting.domain.codebook import Codebook
from forecasting.evaluation._diagnostics import quick_diagnostics
from forecasting.model.arithmetic import CLUSTERS, PARAMETERS
from forecasting.model.fitting import fit
from forecasting.model.predictive import thin, trigger_log_likelihood
from forecasting.model.priors import PriorSet
from forecasting.model.pymc_model import VARIANTS, build_model
from forecasting.settings import SamplerSettings

log = logging.getLogger(__name__)

SERVED = "full"  # the served model: every comparison is also stated against it
# Small but honest: 4 chains, 500 draws after 500 tuning steps.
COMPARISON_SAMPLER = SamplerSettings(sampler="nutpie", chains=4, draws=500, tune=500,
                                     target_accept=0.9, seed=20261129)
K_THRESHOLD = 0.7  # triggers above it are refitted exactly
MAX_REFITS = 10  # exact refits per model, highest k first
LOO_DRAWS = 1000  # posterior draws (thinned evenly within chains) PSIS-LOO uses
LOG_LIK = "trigger_log_lik"
MAX_RHAT = 1.05  # above it (or with divergences) a model's fit is called out as poorly mixed
SE_MULTIPLE = 2.0
MIN_DIFFERENCE = 4.0
RULE = (f"two models differ only when |elpd difference| >= max({SE_MULTIPLE:g} x SE of the "
        f"difference, {MIN_DIFFERENCE:g}); otherwise the data cannot tell them apart")
Progress = Callable[[str], None]


def resolve_variants(names: Iterable[str] | None = None) -> list[str]:
    """The models to compare: the served one first, then `names` (default: every variant)."""
    names = list(VARIANTS) if names is None else [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"Requested variant '{unknown[0]}' but it must be one of "
                         f"{list(VARIANTS)}")
    return [SERVED] + [n for n in dict.fromkeys(names) if n != SERVED]


# -- the (chain, draw, trigger) log likelihood -------------------------------------------------


def _tree(posterior: xr.Dataset, data: xr.DataTree) -> xr.DataTree:
    return xr.DataTree.from_dict({"posterior": posterior,
                                  "constant_data": data["constant_data"].to_dataset(),
                                  "observed_data": data["observed_data"].to_dataset()})


def trigger_loo_data(tree: xr.DataTree, max_draws: int | None = LOO_DRAWS) -> xr.DataTree:
    """What PSIS-LOO over triggers needs: group log_likelihood with LOG_LIK (chain, draw,
    trigger), each trigger's episodes with its cluster terms integrated out, and the
    top-level parameters of the same draws in group posterior (for the relative efficiency).
    """
    posterior = thin(tree.posterior.to_dataset(), max_draws)
    ll, labels = trigger_log_likelihood(_tree(posterior, tree), max_draws=None)
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    log_lik = xr.Dataset(
        {LOG_LIK: (("chain", "draw", "trigger"), ll.reshape(chains, draws, len(labels)))},
        coords={"chain": posterior.coords["chain"].values,
                "draw": posterior.coords["draw"].values,
                "trigger": np.asarray(labels, dtype=object)})
    top = [name for name in PARAMETERS if name in posterior]
    return xr.DataTree.from_dict({"posterior": posterior[top], "log_likelihood": log_lik})


def held_out_log_likelihood(posterior: xr.Dataset, data: xr.DataTree, index: int,
                            label: str) -> xr.DataArray:
    """log p(trigger `index`'s episodes | each draw of `posterior`), (chain, draw), its
    cluster terms integrated out: the exact held-out density when `posterior` comes from a
    fit without that trigger. `data` is a fit of all the episodes (its constant_data and
    observed_data hold the trigger's cells)."""
    cluster_dims = {cluster.dim for cluster in CLUSTERS.values()}
    keep = [name for name, var in posterior.data_vars.items() if not cluster_dims & set(var.dims)]
    post = posterior[keep].drop_vars(list(cluster_dims), errors="ignore")
    post = post.assign_coords(trigger=np.asarray([label], dtype=object))
    const = data["constant_data"].to_dataset()
    cells = np.flatnonzero(const["event_idx"].values == index)
    if not len(cells):
        raise ValueError(f"trigger {label!r} has no cells in the data")
    const = const.isel(cell=cells)
    const = const.assign(event_idx=("cell", np.zeros(len(cells), dtype=np.int64)))
    one = xr.DataTree.from_dict({"posterior": post, "constant_data": const,
                                 "observed_data": data["observed_data"].to_dataset().isel(
                                     cell=cells)})
    ll, _ = trigger_log_likelihood(one, max_draws=None)
    return xr.DataArray(ll[:, 0].reshape(post.sizes["chain"], post.sizes["draw"]),
                        dims=("chain", "draw"),
                        coords={"chain": post.coords["chain"].values,
                                "draw": post.coords["draw"].values})


class TriggerRefits(SamplingWrapper):
    """Exact refits of one model without one trigger, for `arviz_stats.reloo`.

    Records what each refit did (`records`: trigger, seconds, whether the compiled model
    was reused, convergence numbers).
    """

    def __init__(self, frame: pd.DataFrame, codebook: Codebook, priors: PriorSet, variant: str,
                 full_tree: xr.DataTree, loo_data: xr.DataTree, sampler: SamplerSettings,
                 parameterization: dict[str, str] | None = None,
                 progress: Progress | None = None):
        super().__init__(model=variant, idata_orig=loo_data)
        self.frame, self.codebook, self.priors, self.variant = frame, codebook, priors, variant
        self.full_tree, self.sampler, self.parameterization = full_tree, sampler, parameterization
        self.labels = [str(t) for t in loo_data.log_likelihood.coords["trigger"].values]
        self.trigger_ids = self.frame["trigger_id"].astype(str).to_numpy()
        self.progress = progress
        self._current: str | None = None
        self.records: list[dict[str, Any]] = []

    def sel_observations(self, idx):
        label = self.labels[int(idx)]
        self._current = label
        return self.frame[self.trigger_ids != label], (int(idx), label)

    def sample(self, modified_observed_data):
        label = self._current
        if self.progress:
            self.progress(f"{self.variant}: exact refit without trigger {label}")
        t0 = time.perf_counter()
        cells = aggregate(modified_observed_data, self.codebook)
        model = build_model(cells, self.priors, self.parameterization, variant=self.variant)
        tree = fit(model, self.sampler, extras=False)
        timings = json.loads(tree.attrs.get("timings", "{}"))
        self.records.append({"trigger": label, "seconds": time.perf_counter() - t0,
                             "compiled_model_reused": bool(timings.get("compile_cached", False)),
                             **quick_diagnostics(tree)})
        return tree

    def get_inference_data(self, fitted):
        return fitted

    def log_likelihood__i(self, excluded_obs, idata__i):
        index, label = excluded_obs
        return held_out_log_likelihood(idata__i.posterior.to_dataset(), self.full_tree, index,
                                       label).expand_dims(trigger=[label], axis=-1)


# -- one model -----------------------------------------------------------------------------------


def loto_model(frame: pd.DataFrame, codebook: Codebook, priors: PriorSet, variant: str, *,
               sampler: SamplerSettings = COMPARISON_SAMPLER, k_threshold: float = K_THRESHOLD,
               max_refits: int = MAX_REFITS, loo_draws: int | None = LOO_DRAWS,
               progress: Progress | None = None) -> dict[str, Any]:
    """Leave-one-trigger-out of one model: fit, PSIS-LOO over triggers, exact refits of the
    high-k triggers. Returns the model's summary and its pointwise values."""
    if variant not in VARIANTS:
        raise ValueError(f"Requested variant '{variant}' but it must be one of {list(VARIANTS)}")
    seconds: dict[str, float] = {}
    t_start = t0 = time.perf_counter()
    if progress:
        progress(f"{variant}: fitting on all episodes")
    cells = aggregate(frame, codebook)
    model = build_model(cells, priors, variant=variant)
    tree = fit(model, sampler, extras=False)
    timings = json.loads(tree.attrs.get("timings", "{}"))
    seconds["fit"] = time.perf_counter() - t0
    seconds["compile"] = float(timings.get("compile", 0.0))

    t0 = time.perf_counter()
    data = trigger_loo_data(tree, loo_draws)
    seconds["log_likelihood"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        psis = loo(data, pointwise=True, var_name=LOG_LIK)
    seconds["loo"] = time.perf_counter() - t0
    labels = [str(t) for t in psis.pareto_k.coords["trigger"].values]
    k = psis.pareto_k.values.astype(float)
    high = [i for i in np.argsort(-k, kind="stable") if k[i] > k_threshold]
    chosen = high[:max(max_refits, 0)]

    t0 = time.perf_counter()
    wrapper = TriggerRefits(frame, codebook, priors, variant, tree, data, sampler,
                            parameterization=dict(model.forecast_config["parameterization"]),
                            progress=progress)
    result = psis
    if chosen:
        masked = _with_pareto_k(psis, np.where(np.isin(np.arange(len(k)), chosen), k, -np.inf))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = reloo(wrapper, loo_orig=masked, k_threshold=k_threshold, pointwise=True)
    seconds["refits"] = time.perf_counter() - t0
    exact = np.isin(np.arange(len(k)), chosen)
    elpd_i = result.elpd_i.values.astype(float)
    p_i = (result.p_loo_i.values.astype(float) if getattr(result, "p_loo_i", None) is not None
           else _p_loo_i(data, elpd_i))
    records = {r["trigger"]: r for r in wrapper.records}
    high_k = [{"trigger": labels[i], "pareto_k": float(k[i]),
               "elpd_psis": float(psis.elpd_i.values[i]),
               "elpd_exact": float(elpd_i[i]) if exact[i] else None,
               "handled": "exact refit" if exact[i] else "PSIS estimate kept (refit cap reached)",
               "refit": records.get(labels[i])}
              for i in high]
    seconds["total"] = time.perf_counter() - t_start
    n_refits = int(exact.sum())
    return {
        "variant": variant,
        "terms": sorted(VARIANTS[variant]),
        "elpd_loo": float(elpd_i.sum()),
        "se": float(math.sqrt(len(elpd_i) * np.var(elpd_i, ddof=1))) if len(elpd_i) > 1 else None,
        "p_loo": float(p_i.sum()),
        "n_high_k": len(high),
        "max_pareto_k": float(k.max()) if len(k) else None,
        "refits": n_refits,
        "refits_capped": len(high) > n_refits,
        "refits_reusing_compiled_model": sum(r["compiled_model_reused"] for r in wrapper.records),
        "high_k": high_k,
        "n_samples": int(psis.n_samples),
        "good_k": float(psis.good_k),
        "parameterization": dict(model.forecast_config["parameterization"]),
        "diagnostics": quick_diagnostics(tree),
        "seconds": seconds,
        "pointwise": {"trigger": labels, "elpd": elpd_i.tolist(), "pareto_k": k.tolist(),
                      "p_loo": p_i.tolist(), "exact": exact.tolist()},
    }


def _with_pareto_k(result: ELPDDataLOO, values: np.ndarray) -> ELPDDataLOO:
    """A copy of `result` whose Pareto k are `values` (to make reloo refit only some)."""
    out = copy.deepcopy(result)
    out.pareto_k = result.pareto_k.copy(data=values)
    return out


def _p_loo_i(data: xr.DataTree, elpd_i: np.ndarray) -> np.ndarray:
    """lpd_i - elpd_loo_i: each trigger's share of the effective number of parameters."""
    from scipy.special import logsumexp

    ll = data.log_likelihood[LOG_LIK].transpose("chain", "draw", "trigger").values
    ll = ll.reshape(-1, ll.shape[-1])
    return logsumexp(ll, axis=0) - np.log(ll.shape[0]) - elpd_i


# -- the comparison -----------------------------------------------------------------------------


def _elpd_data(summary: dict[str, Any]) -> ELPDDataLOO:
    """An ArviZ result rebuilt from a stored model summary (its pointwise values)."""
    pw = summary["pointwise"]
    elpd_i = np.asarray(pw["elpd"], dtype=float)
    # a trigger refitted exactly no longer carries the PSIS k that flagged it
    k = np.where(pw["exact"], 0.0, np.asarray(pw["pareto_k"], dtype=float))
    coords = {"trigger": np.asarray(pw["trigger"], dtype=object)}
    return ELPDDataLOO(
        elpd=float(elpd_i.sum()), se=float(math.sqrt(len(elpd_i) * np.var(elpd_i, ddof=1))),
        p=float(np.sum(pw["p_loo"])), n_samples=int(summary["n_samples"]),
        n_data_points=len(elpd_i), scale="log", warning=bool(np.any(k > summary["good_k"])),
        good_k=float(summary["good_k"]),
        elpd_i=xr.DataArray(elpd_i, dims="trigger", coords=coords),
        pareto_k=xr.DataArray(k, dims="trigger", coords=coords))


def paired_difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
    """elpd(a) - elpd(b) and its SE, paired over triggers: sqrt(n var(a_i - b_i))."""
    d = np.asarray(a["pointwise"]["elpd"]) - np.asarray(b["pointwise"]["elpd"])
    return float(d.sum()), float(math.sqrt(len(d) * np.var(d, ddof=1))) if len(d) > 1 else 0.0


def distinguishable(diff: float, se: float) -> bool:
    """`RULE`: is an elpd difference large against its SE and in absolute terms?"""
    return abs(diff) >= max(SE_MULTIPLE * se, MIN_DIFFERENCE)


def comparison_table(models: dict[str, dict[str, Any]], k_threshold: float = K_THRESHOLD
                     ) -> dict[str, Any]:
    """The table, the differences against the served model and the conclusions, from the
    models' summaries (what `loto_model` returns, or what a stored report holds)."""
    names = list(models)
    triggers = models[names[0]]["pointwise"]["trigger"]
    for name in names[1:]:
        if models[name]["pointwise"]["trigger"] != triggers:
            raise ValueError(f"{name} was scored on other triggers than {names[0]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        frame = compare({name: _elpd_data(models[name]) for name in names}, method="stacking",
                        round_to="none")
    best = str(frame.index[0])
    rows = []
    for name, row in frame.iterrows():
        m = models[name]
        # the paired SE as R's loo computes it (n - 1 in the variance; ArviZ divides by n)
        diff, dse = paired_difference(m, models[best]) if name != best else (0.0, 0.0)
        if name == best:
            verdict = "best"
        elif distinguishable(diff, dse):
            verdict = f"worse than {best}"
        else:
            verdict = f"cannot tell apart from {best}"
        rows.append({
            "model": str(name), "rank": int(row["rank"]), "elpd_loo": float(row["elpd"]),
            "se": float(row["se"]), "elpd_diff": diff, "dse": dse,
            # normal approximation: how likely the model is worse than the best
            "p_worse": float(norm.cdf(-diff / dse)) if dse > 0 else None,
            "p_loo": float(row["p"]), "weight": float(row["weight"]),
            "n_high_k": m["n_high_k"], "refits": m["refits"],
            "high_k_kept_psis": m["n_high_k"] - m["refits"], "verdict": verdict,
        })
    against = {}
    if SERVED in models:
        for name in names:
            if name == SERVED:
                continue
            diff, se = paired_difference(models[name], models[SERVED])
            against[name] = {"elpd_diff": diff, "dse": se,
                             "p_better": float(norm.cdf(diff / se)) if se > 0 else None,
                             "verdict": (
                ("better than" if diff > 0 else "worse than") + f" {SERVED}"
                if distinguishable(diff, se) else f"cannot tell apart from {SERVED}")}
    return {"table": rows, "best": best, "against_served": against,
            "conclusions": _conclusions(rows, against, models, len(triggers), k_threshold)}


def _conclusions(rows, against, models, n_triggers: int, k_threshold: float) -> list[str]:
    best = rows[0]["model"]
    out = [f"best out of sample: {best} (elpd_loo {rows[0]['elpd_loo']:.1f}, "
           f"SE {rows[0]['se']:.1f}, over {n_triggers} left-out triggers)"]
    for name, a in against.items():
        diff, se = a["elpd_diff"], a["dse"]
        ratio = (f", {abs(diff) / se:.1f} SE; P({SERVED if diff < 0 else name} better) "
                 f"{norm.cdf(abs(diff) / se):.2f} by the normal approximation" if se > 0 else "")
        if a["verdict"].startswith("cannot"):
            out.append(f"{name} vs {SERVED}: {diff:+.1f} (SE {se:.1f}{ratio}): the data cannot "
                       f"tell them apart")
        else:
            winner = name if diff > 0 else SERVED
            out.append(f"{name} vs {SERVED}: {diff:+.1f} (SE {se:.1f}{ratio}): {winner} "
                       f"predicts left-out triggers better")
    if n_triggers < 100:
        out.append(f"only {n_triggers} triggers (< 100): the normal approximation behind the "
                   f"SEs is rough; read differences near the line as none")
    for row in rows:
        m = models[row["model"]]
        d = m.get("diagnostics") or {}
        if (d.get("max_rhat") or 1.0) > MAX_RHAT or (d.get("divergences") or 0) > 0:
            out.append(f"{row['model']}: its fit mixed poorly (max R-hat "
                       f"{d.get('max_rhat') or float('nan'):.3f}, "
                       f"{d.get('divergences')} divergences): its numbers are less certain "
                       f"than their SE says")
        poor = [h["trigger"] for h in m.get("high_k", []) if h.get("refit") and (
            (h["refit"].get("max_rhat") or 1.0) > MAX_RHAT
            or (h["refit"].get("divergences") or 0) > 0)]
        if poor:
            out.append(f"{row['model']}: the refits without {', '.join(poor)} mixed poorly "
                       f"(R-hat > {MAX_RHAT:g} or divergences)")
        if m["n_high_k"] == 0:
            continue
        kept = m["n_high_k"] - m["refits"]
        out.append(f"{row['model']}: {m['n_high_k']} trigger{'s' if m['n_high_k'] > 1 else ''} "
                   f"with Pareto k > {k_threshold:g}, "
                   + (("all " if m["n_high_k"] > 1 else "") + "refitted exactly" if not kept else
                      f"{m['refits']} refitted exactly, {kept} kept their PSIS estimate (refit "
                      f"cap reached: those estimates are unreliable, usually optimistic)"))
    return out


def compare_variants(episodes: pd.DataFrame, codebook: Codebook, priors: PriorSet,
                     variants: Iterable[str] | None = None, *,
                     sampler: SamplerSettings = COMPARISON_SAMPLER,
                     k_threshold: float = K_THRESHOLD, max_refits: int = MAX_REFITS,
                     loo_draws: int | None = LOO_DRAWS, progress: Progress | None = None,
                     done: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Leave-one-trigger-out comparison of the served model with `variants` (default every
    variant). `done` holds model summaries already computed on the same data and settings
    (a stored comparison): only the others are fitted."""
    t0 = time.perf_counter()
    frame = episodes_frame(episodes).reset_index(drop=True)
    cells = aggregate(frame, codebook)
    names = resolve_variants(variants)
    if len(cells.coords["trigger"]) < 2:
        raise ValueError("leaving triggers out needs episodes of at least two triggers")
    models = {}
    for name in names:
        if done and name in done:
            models[name] = done[name]
            continue
        models[name] = loto_model(frame, codebook, priors, name, sampler=sampler,
                                  k_threshold=k_threshold, max_refits=max_refits,
                                  loo_draws=loo_draws, progress=progress)
    report = {
        "unit": "trigger",
        "served": SERVED,
        "models_compared": names,
        "n_triggers": len(cells.coords["trigger"]),
        "n_episodes": int(cells.n_episodes),
        "data_hash": cells.fingerprint,
        "priors_hash": priors.content_hash,
        "settings": comparison_settings(sampler, k_threshold, max_refits, loo_draws),
        "rule": RULE,
        **comparison_table(models, k_threshold),
        "models": models,
        "seconds": time.perf_counter() - t0,
    }
    return report


def comparison_settings(sampler: SamplerSettings, k_threshold: float, max_refits: int,
                        loo_draws: int | None) -> dict[str, Any]:
    """What a stored comparison must share with a new one for their models to be mixed."""
    return {"sampler": asdict(sampler), "k_threshold": k_threshold, "max_refits": max_refits,
            "loo_draws": loo_draws}
