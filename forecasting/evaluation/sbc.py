"""Simulation-based calibration (Talts et al. 2018) and interval coverage on simulated data.

Each simulation draws "true" parameters from the priors, simulates episodes from them
(forecasting.evaluation.simulate), fits the model, and records the rank of every true value among
thinned posterior draws. If the model's inference is calibrated the ranks are uniform on
0..L. The same fits give the coverage of the 50% and 90% posterior intervals of the true
cell probabilities P(any restriction): averaged over prior draws it is exactly nominal for a
calibrated fit.

Runs in parallel over processes (joblib/loky); each worker compiles the model once and reuses
it (`forecasting.model.sampling` caches compiled models per process), which is why every simulation
uses one fixed parameterization rather than the data-driven one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict

import numpy as np
from scipy import stats

from forecasting.domain.codebook import Codebook
from forecasting.evaluation._diagnostics import quick_diagnostics
from forecasting.evaluation.calibration import _png
from forecasting.evaluation.simulate import (
    DEFAULT_SCALES,
    default_params,
    params_from_prior,
    simulate_episodes,
    true_level_probabilities,
)
from forecasting.model.arithmetic import (
    EFFECTS,
    FORECAST_VARIABLES,
    N_CUTPOINTS,
    PARAMETERS,
    any_restriction,
    level_probabilities,
    linear_predictor,
)
from forecasting.model.priors import PriorSet
from forecasting.settings import SamplerSettings

log = logging.getLogger(__name__)

SBC_SAMPLER = SamplerSettings(sampler="nutpie", chains=4, draws=250, tune=400,
                              target_accept=0.9, seed=1)
# Every scalar top-level parameter, every cutpoint and a few elements of the effects: each is
# one rank statistic.
SCALARS = tuple(name for name, p in PARAMETERS.items() if p.size is None)
ELEMENTS = {"cutpoints": [(k,) for k in range(N_CUTPOINTS)], "bloc_eff": [(0,)],
            "type_eff": [(0,)], "trigger_eff": [(0,)], "pt_eff": [(0, 0), (5, 3)]}
INTERVALS = (0.5, 0.9)


def _quantities(values: dict) -> dict[str, float]:
    out = {}
    for name in SCALARS:
        out[name] = float(np.asarray(values[name]))
    for name, elements in ELEMENTS.items():
        for idx in elements:
            out[f"{name}[{','.join(map(str, idx))}]"] = float(np.asarray(values[name])[idx])
    return out


def _thinned(posterior, n: int) -> dict[str, np.ndarray]:
    """(..., L) arrays of the ranked variables: every k-th draw of every chain."""
    return {name: _thinned_draws(posterior, name, n) for name in (*SCALARS, *ELEMENTS)}


def seed_like_truth(codebook: Codebook, seed: int) -> dict:
    """Fixed "true" parameters shaped like the seed data (forecasting.evaluation.simulate's
    defaults), with the scales they were drawn at."""
    return {**default_params(codebook, seed=seed),
            **{effect.scale: float(DEFAULT_SCALES[name]) for name, effect in EFFECTS.items()}}


def one_simulation(i: int, codebook: Codebook, priors: PriorSet, n_episodes: int,
                   sampler: SamplerSettings, thin_to: int, parameterization, seed: int,
                   truth_from: str = "prior") -> dict:
    """Simulate, fit, rank; plus interval coverage of the true P(any restriction) per cell."""
    from forecasting.domain.cells import aggregate
    from forecasting.model.fitting import fit
    from forecasting.model.pymc_model import build_model

    sim_seed = seed * 1000 + i
    truth = (seed_like_truth(codebook, sim_seed) if truth_from == "seed_like"
             else params_from_prior(codebook, priors, sim_seed))
    frame, truth = simulate_episodes(codebook, n_episodes, seed=sim_seed, params=truth)
    cells = aggregate(frame, codebook)
    t0 = time.perf_counter()
    model = build_model(cells, priors, parameterization)
    tree = fit(model, SamplerSettings(**{**asdict(sampler), "seed": sampler.seed + i}),
             extras=False)
    seconds = time.perf_counter() - t0
    diag = quick_diagnostics(tree)
    post = tree["posterior"].to_dataset()
    thinned = _thinned(post, thin_to)
    true_q = _quantities(truth)
    ranks = {}
    for name, value in true_q.items():
        base = name.split("[")[0]
        draws = thinned[base]
        if "[" in name:
            idx = tuple(int(x) for x in name[name.index("[") + 1:-1].split(","))
            draws = draws[idx]
        ranks[name] = int(np.sum(draws < value))

    # coverage: every partner x type cell under every observed scenario (trigger, sev, ali)
    c = cells.coords
    n_p, n_t = len(c["partner"]), len(c["intel_type"])
    scen = np.unique(np.column_stack([cells.trigger_idx, cells.severity, cells.alignment]), axis=0)
    pp, tt = np.meshgrid(np.arange(n_p), np.arange(n_t), indexing="ij")
    pp, tt = np.tile(pp.ravel(), len(scen)), np.tile(tt.ravel(), len(scen))
    sc = np.repeat(scen, n_p * n_t, axis=0)
    truth_any = 1 - true_level_probabilities(truth, pp, tt, sc[:, 0], sc[:, 1], sc[:, 2])[:, 0]
    # samples last in `thinned`; the arithmetic takes them first
    params = {name: np.moveaxis(_thinned_draws(post, name, thin_to), -1, 0)
              for name in FORECAST_VARIABLES}
    eta = linear_predictor(params, pp, tt, sc[:, 0], sc[:, 1], sc[:, 2])  # (L, cells)
    p_any = any_restriction(level_probabilities(eta, params["cutpoints"][:, None, :])).T
    coverage = {}
    for prob in INTERVALS:
        lo, hi = np.quantile(p_any, [(1 - prob) / 2, (1 + prob) / 2], axis=-1)
        coverage[f"{prob:g}"] = float(np.mean((truth_any >= lo) & (truth_any <= hi)))
    return {"sim": i, "ranks": ranks, "coverage": coverage, "n_cells_checked": int(len(truth_any)),
            "n_draws": int(thinned["cutpoints"].shape[-1]), "seconds": seconds,
            "divergences": diag.get("divergences"), "max_rhat": diag.get("max_rhat"),
            "observed_any": float((frame["level"] >= 1).mean())}


def _thinned_draws(post, name: str, n: int) -> np.ndarray:
    """(..., L): every k-th draw of every chain of one variable, chains concatenated."""
    da = post[name]
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    values = da.transpose(*dims, "chain", "draw").values
    values = values.reshape(values.shape[: len(dims)] + (-1,))
    keep = np.linspace(0, values.shape[-1] - 1, min(n, values.shape[-1])).round().astype(int)
    return values[..., keep]


def _chunk(indices, codebook, priors, n_episodes, sampler, thin_to, parameterization, seed,
           truth_from):
    out = []
    for i in indices:
        try:
            out.append(one_simulation(i, codebook, priors, n_episodes, sampler, thin_to,
                                      parameterization, seed, truth_from))
        except Exception as exc:  # a failed fit is a result to report, not a crash
            log.warning("SBC simulation %d failed: %s", i, exc)
            out.append({"sim": i, "error": f"{type(exc).__name__}: {exc}"})
    return out


def uniformity(ranks: np.ndarray, n_draws: int, bins: int | None = None) -> dict:
    """Chi-square test of ranks 0..n_draws against the discrete uniform, on `bins` bins."""
    ranks = np.asarray(ranks, int)
    n = ranks.size
    bins = bins or int(max(2, min(20, n // 5)))
    bins = min(bins, n_draws + 1)
    edges = np.linspace(0, n_draws + 1, bins + 1).round().astype(int)  # over rank values
    which = np.searchsorted(edges, ranks, side="right") - 1
    observed = np.bincount(which, minlength=bins)[:bins]
    expected = n * np.diff(edges) / (n_draws + 1)
    stat, p = stats.chisquare(observed, expected)
    return {"chi2": float(stat), "pvalue": float(p), "bins": int(bins),
            "observed": observed.tolist(), "expected": expected.tolist()}


def run_sbc(codebook: Codebook, priors: PriorSet, n_sims: int = 100, n_episodes: int = 600,
            sampler: SamplerSettings = SBC_SAMPLER, thin_to: int = 99, n_jobs: int = 1,
            parameterization: dict | str | None = "noncentered", seed: int = 0,
            bins: int | None = None, truth_from: str = "prior") -> dict:
    """N simulations (in `n_jobs` processes), ranks, per-quantity uniformity tests, coverage.

    `truth_from` "prior" is SBC proper; "seed_like" simulates from fixed parameters shaped like
    the seed data (forecasting.evaluation.simulate's defaults): its coverage answers "do 90% intervals
    cover 90% on data like ours?" (the rank tests then mean nothing: the truth is not a prior
    draw).
    """
    valid = ("prior", "seed_like")
    if truth_from not in valid:
        raise ValueError(f"Requested truth_from '{truth_from}' but it must be one of {list(valid)}")
    if n_sims < 1:
        raise ValueError("n_sims must be at least 1")
    t0 = time.perf_counter()
    chunks = [list(range(n_sims))[j::n_jobs] for j in range(n_jobs)]
    args = (codebook, priors, n_episodes, sampler, thin_to, parameterization, seed,
            truth_from)
    if n_jobs == 1:
        results = _chunk(chunks[0], *args)
    else:
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=n_jobs, backend="loky")(
            delayed(_chunk)(chunk, *args) for chunk in chunks if chunk)
        results = sorted((r for part in parts for r in part), key=lambda r: r["sim"])
    ok = [r for r in results if "ranks" in r]
    failed = [r for r in results if "ranks" not in r]
    if not ok:
        raise RuntimeError(f"every SBC simulation failed: {failed[0]['error']}")
    n_draws = min(r["n_draws"] for r in ok)
    names = list(ok[0]["ranks"])
    tests = {name: uniformity(np.array([r["ranks"][name] for r in ok]), n_draws, bins)
             for name in names}
    pvalues = {name: t["pvalue"] for name, t in tests.items()}
    min_p = min(pvalues.values())
    coverage = {k: float(np.mean([r["coverage"][k] for r in ok])) for k in ok[0]["coverage"]}
    return {
        "n_sims": n_sims, "n_ok": len(ok), "failed": failed, "n_episodes": n_episodes,
        "n_draws": n_draws, "thin_to": thin_to, "sampler": asdict(sampler),
        "parameterization": parameterization, "priors_hash": priors.content_hash,
        "truth_from": truth_from,
        "tests": tests, "pvalues": pvalues, "min_pvalue": min_p,
        # Bonferroni over the quantities: a conservative single verdict
        "adjusted_min_pvalue": float(min(1.0, min_p * len(pvalues))),
        "uniform": bool(min(1.0, min_p * len(pvalues)) >= 0.01),
        "coverage": coverage,
        "divergences": int(sum(r.get("divergences") or 0 for r in ok)),
        "ranks": {name: [r["ranks"][name] for r in ok] for name in names},
        "simulations": [{k: v for k, v in r.items() if k != "ranks"} for r in results],
        "seconds": time.perf_counter() - t0, "n_jobs": n_jobs,
    }


def plot_sbc(report: dict, cols: int = 4) -> bytes:
    """Rank histograms per quantity with the 99% band of a uniform histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["ranks"])
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 1.9 * rows), squeeze=False)
    n_draws = report["n_draws"]
    for ax, name in zip(axes.ravel(), names, strict=False):
        test = report["tests"][name]
        n = len(report["ranks"][name])
        edges = np.linspace(0, n_draws + 1, test["bins"] + 1)
        ax.hist(report["ranks"][name], bins=edges, color="C0", alpha=0.8)
        share = 1.0 / test["bins"]
        lo, hi = stats.binom.ppf([0.005, 0.995], n, share)
        ax.axhspan(lo, hi, color="grey", alpha=0.25)
        ax.axhline(n * share, color="grey", lw=0.8)
        ax.set_title(f"{name}  p={test['pvalue']:.2f}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(f"SBC ranks ({report['n_ok']} simulations, {n_draws} draws); "
                 "grey: 99% band if uniform", fontsize=8)
    return _png(plt, fig)
