"""Simulation-based calibration (Talts et al. 2018) and interval coverage on simulated data.

Each simulation draws "true" parameters from the priors, simulates episodes from them
clustered as the coded record is (forecasting.evaluation.simulate: triggers touching a few
partners, reactions of nearly every type, event and reaction effects, two partners never
coded), fits the model, and records the rank of every true value among L thinned posterior
draws: every top-level parameter (the cluster scales sigma_event and sigma_reaction
included), the cutpoints, a few elements of the effects (an uncoded partner's among them)
and one trigger's event and reaction effects. If the model's inference is calibrated the
ranks are uniform on 0..L.

The same fits give the coverage of the central 50% and 90% posterior intervals of what a
forecast serves: the new-trigger P(any restriction) of every partner x type under every
simulated scenario, the cluster terms integrated out (arithmetic.integrate_clusters) with
each draw's scales, against the truth computed the same way from the true parameters. The
interval of L draws is [x(a), x(b)], order statistics (0-based) a = ceil((L - 1)(1 - q)/2),
b = floor((L - 1)(1 + q)/2), the inner ends of numpy's interpolated quantiles. A truth
exchangeable with the draws (calibration) has a rank r uniform on 0..L and lies in the
interval exactly when a < r <= b: the expected coverage is (b - a) / (L + 1), 0.88 for 90%
intervals of 99 draws (0.48 for 50%), not 0.90; `expected_coverage`.

Runs in parallel over processes (joblib/loky); each worker compiles the model once and reuses
it (`forecasting.model.sampling` caches compiled models per process), which is why every
simulation uses one fixed parameterization rather than the data-driven one, and why the
simulated sets of one size have the same numbers of triggers and reactions and the same coded
partners (one model structure).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict

import numpy as np
from scipy import stats

from forecasting.domain.codebook import Codebook
from forecasting.evaluation._diagnostics import quick_diagnostics
from forecasting.evaluation.calibration import _png
from forecasting.evaluation.simulate import simulate_episodes, true_level_probabilities
from forecasting.model.arithmetic import (
    CLUSTER_SCALES,
    FORECAST_VARIABLES,
    N_CUTPOINTS,
    PARAMETERS,
    any_restriction,
    cluster_sd,
    integrate_clusters,
    linear_predictor,
)
from forecasting.model.priors import PriorSet
from forecasting.settings import SamplerSettings

log = logging.getLogger(__name__)

# 4 x 500 draws thinned to 99: the cluster scales mix slowest (bulk ESS 70-300 per 1,000
# draws on 600 simulated episodes), so every 20th draw is close to independent, as the rank
# statistics and the coverage expectation assume. About 12 s per fit once compiled.
SBC_SAMPLER = SamplerSettings(sampler="nutpie", chains=4, draws=500, tune=400,
                              target_accept=0.9, seed=1)
# Every scalar top-level parameter, every cutpoint and a few elements of the effects: each is
# one rank statistic. partner_eff[-1] is the vocabulary's last partner, never coded in the
# simulations (UNSEEN_PARTNERS), so its effect is a fresh draw from its bloc.
SCALARS = tuple(name for name, p in PARAMETERS.items() if p.size is None)
ELEMENTS = {"cutpoints": [(k,) for k in range(N_CUTPOINTS)], "bloc_eff": [(0,)],
            "type_eff": [(0,)], "trigger_eff": [(0,)], "pt_eff": [(0, 0), (5, 3)],
            "partner_eff": [(-1,)]}
# Cluster effects are ranked by label (the first coded trigger, its first reaction), when
# the posterior stores them.
CLUSTER_ELEMENTS = {"event_eff": "trigger", "reaction_eff": "reaction"}
INTERVALS = (0.5, 0.9)
UNSEEN_PARTNERS = 2  # as in the seed file: 21 of 23 partners coded


def interval_positions(n_draws: int, prob: float) -> tuple[int, int]:
    """(a, b): the 0-based order statistics bounding the central `prob` interval of n draws.

    The inner ends of numpy's linearly interpolated quantiles (positions (n - 1)(1 -+ q)/2),
    so that the interval is a pair of draws and its expected coverage exact."""
    lo = (n_draws - 1) * (1 - prob) / 2
    hi = (n_draws - 1) * (1 + prob) / 2
    return math.ceil(lo - 1e-9), math.floor(hi + 1e-9)


def central_interval(draws: np.ndarray, prob: float, axis: int = -1
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of the central `prob` interval of the draws along `axis`."""
    a, b = interval_positions(draws.shape[axis], prob)
    part = np.partition(draws, (a, b), axis=axis)
    return np.take(part, a, axis=axis), np.take(part, b, axis=axis)


def expected_coverage(n_draws: int, prob: float) -> float:
    """P(truth in `central_interval`) when the truth's rank among the n draws is uniform on
    0..n (exact calibration): the truth is inside when a < rank <= b."""
    a, b = interval_positions(n_draws, prob)
    return (b - a) / (n_draws + 1)


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


def _cluster_ranks(post, truth: dict, thin_to: int) -> dict[str, int]:
    """Ranks of the first coded trigger's event effect and its first reaction's effect."""
    ranks = {}
    for name, dim in CLUSTER_ELEMENTS.items():
        if name not in post or name not in truth or not len(truth[dim]):
            continue
        label = truth[dim][0]
        labels = [str(x) for x in post.coords[dim].values]
        if label not in labels:
            continue
        draws = _thinned_draws(post[[name]].isel({dim: labels.index(label)}), name, thin_to)
        ranks[f"{name}[first]"] = int(np.sum(draws < float(truth[name][0])))
    return ranks


def new_trigger_any(params: dict, partner, intel_type, trigger_type, severity, alignment
                    ) -> np.ndarray:
    """P(any restriction) of cells of a new trigger, (draws, cells), from draws with sample
    axes first: the cluster terms integrated out at each draw's scales."""
    eta = linear_predictor(params, partner, intel_type, trigger_type, severity, alignment)
    sd = cluster_sd(params["sigma_event"], params["sigma_reaction"])
    probs = integrate_clusters(eta, np.asarray(params["cutpoints"])[..., None, :],
                               np.asarray(sd)[..., None])
    return any_restriction(probs)


def one_simulation(i: int, codebook: Codebook, priors: PriorSet, n_episodes: int,
                   sampler: SamplerSettings, thin_to: int, parameterization, seed: int,
                   truth_from: str = "prior", unseen_partners: int = UNSEEN_PARTNERS) -> dict:
    """Simulate, fit, rank; plus interval coverage of the true new-trigger P(any restriction)
    of every partner x type cell under every simulated scenario."""
    from forecasting.domain.cells import aggregate
    from forecasting.model.fitting import fit
    from forecasting.model.pymc_model import build_model

    sim_seed = seed * 1000 + i
    # "prior": the truth drawn from the priors for the partners the design codes, as the
    # fitted model's prior draws it; "seed_like": fixed parameters shaped like the seed fit
    frame, truth = simulate_episodes(codebook, n_episodes, seed=sim_seed,
                                     priors=priors if truth_from == "prior" else None,
                                     unseen_partners=unseen_partners)
    cells = aggregate(frame, codebook)
    t0 = time.perf_counter()
    model = build_model(cells, priors, parameterization)
    tree = fit(model, SamplerSettings(**{**asdict(sampler), "seed": sampler.seed + i}),
             extras=False)
    seconds = time.perf_counter() - t0
    diag = quick_diagnostics(tree)
    post = tree["posterior"].to_dataset()
    thinned = _thinned(post, thin_to)
    ranks = {}
    for name, value in _quantities(truth).items():
        base = name.split("[")[0]
        draws = thinned[base]
        if "[" in name:
            idx = tuple(int(x) for x in name[name.index("[") + 1:-1].split(","))
            draws = draws[idx]
        ranks[name] = int(np.sum(draws < value))
    ranks |= _cluster_ranks(post, truth, thin_to)

    # coverage: every partner x type cell under every simulated scenario, for a new trigger
    c = cells.coords
    n_p, n_t = len(c["partner"]), len(c["intel_type"])
    scen = np.unique(np.column_stack([cells.trigger_idx, cells.severity, cells.alignment]), axis=0)
    pp, tt = np.meshgrid(np.arange(n_p), np.arange(n_t), indexing="ij")
    pp, tt = np.tile(pp.ravel(), len(scen)), np.tile(tt.ravel(), len(scen))
    sc = np.repeat(scen, n_p * n_t, axis=0)
    truth_any = 1 - true_level_probabilities(truth, pp, tt, sc[:, 0], sc[:, 1], sc[:, 2])[:, 0]
    # samples last in `thinned`; the arithmetic takes them first
    params = {name: np.moveaxis(_thinned_draws(post, name, thin_to), -1, 0)
              for name in (*FORECAST_VARIABLES, *CLUSTER_SCALES)}
    p_any = new_trigger_any(params, pp, tt, sc[:, 0], sc[:, 1], sc[:, 2])  # (L, cells)
    unseen = ~cells.observed_partners[pp]
    coverage, coverage_unseen = {}, {}
    for prob in INTERVALS:
        lo, hi = central_interval(p_any, prob, axis=0)
        inside = (truth_any >= lo) & (truth_any <= hi)
        coverage[f"{prob:g}"] = float(np.mean(inside))
        if unseen.any():
            coverage_unseen[f"{prob:g}"] = float(np.mean(inside[unseen]))
    return {"sim": i, "ranks": ranks, "coverage": coverage, "coverage_unseen": coverage_unseen,
            "n_cells_checked": int(len(truth_any)), "n_draws": int(p_any.shape[0]),
            "seconds": seconds, "divergences": diag.get("divergences"),
            "max_rhat": diag.get("max_rhat"), "min_ess_bulk": diag.get("min_ess_bulk"),
            "observed_any": float((frame["level"] >= 1).mean()),
            "n_triggers": len(c["trigger"]), "n_reactions": len(c["reaction"]),
            "unseen_partners": [p for p, seen in zip(c["partner"], cells.observed_partners,
                                                     strict=True) if not seen]}


def _thinned_draws(post, name: str, n: int) -> np.ndarray:
    """(..., L): every k-th draw of every chain of one variable, chains concatenated."""
    da = post[name]
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    values = da.transpose(*dims, "chain", "draw").values
    values = values.reshape(values.shape[: len(dims)] + (-1,))
    keep = np.linspace(0, values.shape[-1] - 1, min(n, values.shape[-1])).round().astype(int)
    return values[..., keep]


def _chunk(indices, codebook, priors, n_episodes, sampler, thin_to, parameterization, seed,
           truth_from, unseen_partners):
    out = []
    for i in indices:
        try:
            out.append(one_simulation(i, codebook, priors, n_episodes, sampler, thin_to,
                                      parameterization, seed, truth_from, unseen_partners))
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


def coverage_summary(results: list[dict], n_draws: int, key: str = "coverage") -> dict:
    """Mean coverage per interval over simulations, its Monte Carlo standard error (the
    simulations are independent; the cells of one are not), the exact expectation for
    `n_draws` draws and the z-score of the difference."""
    out = {}
    for prob in INTERVALS:
        k = f"{prob:g}"
        values = np.array([r[key][k] for r in results if k in r.get(key, {})])
        if not len(values):
            continue
        expected = expected_coverage(n_draws, prob)
        mcse = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None
        out[k] = {"coverage": float(values.mean()), "expected": expected, "mcse": mcse,
                  "z": (float(values.mean() - expected) / mcse) if mcse else None,
                  "n_sims": int(len(values))}
    return out


def run_sbc(codebook: Codebook, priors: PriorSet, n_sims: int = 100, n_episodes: int = 600,
            sampler: SamplerSettings = SBC_SAMPLER, thin_to: int = 99, n_jobs: int = 1,
            parameterization: dict | str | None = "noncentered", seed: int = 0,
            bins: int | None = None, truth_from: str = "prior",
            unseen_partners: int = UNSEEN_PARTNERS) -> dict:
    """N simulations (in `n_jobs` processes), ranks, per-quantity uniformity tests, coverage.

    `truth_from` "prior" is SBC proper; "seed_like" simulates from fixed parameters shaped like
    the seed fit (forecasting.evaluation.simulate's defaults): its coverage answers "do 90%
    intervals cover what they should on data like ours?" (only approximately: coverage is
    exact on average over the prior, not at every truth; and the rank tests then mean
    nothing, the truth not being a prior draw).

    `coverage` is the mean coverage per interval (as before); `coverage_check` adds its
    expectation for the number of draws (`expected_coverage`), its Monte Carlo standard
    error over the simulations and the z-score; `coverage_unseen` is the same for the
    partners never coded.
    """
    valid = ("prior", "seed_like")
    if truth_from not in valid:
        raise ValueError(f"Requested truth_from '{truth_from}' but it must be one of {list(valid)}")
    if n_sims < 1:
        raise ValueError("n_sims must be at least 1")
    t0 = time.perf_counter()
    chunks = [list(range(n_sims))[j::n_jobs] for j in range(n_jobs)]
    args = (codebook, priors, n_episodes, sampler, thin_to, parameterization, seed,
            truth_from, unseen_partners)
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
    names = [name for name in ok[0]["ranks"] if all(name in r["ranks"] for r in ok)]
    tests = {name: uniformity(np.array([r["ranks"][name] for r in ok]), n_draws, bins)
             for name in names}
    pvalues = {name: t["pvalue"] for name, t in tests.items()}
    min_p = min(pvalues.values())
    check = coverage_summary(ok, n_draws)
    return {
        "n_sims": n_sims, "n_ok": len(ok), "failed": failed, "n_episodes": n_episodes,
        "n_draws": n_draws, "thin_to": thin_to, "sampler": asdict(sampler),
        "parameterization": parameterization, "priors_hash": priors.content_hash,
        "truth_from": truth_from, "unseen_partners": unseen_partners,
        "tests": tests, "pvalues": pvalues, "min_pvalue": min_p,
        # Bonferroni over the quantities: a conservative single verdict
        "adjusted_min_pvalue": float(min(1.0, min_p * len(pvalues))),
        "uniform": bool(min(1.0, min_p * len(pvalues)) >= 0.01),
        "coverage": {k: v["coverage"] for k, v in check.items()},
        "coverage_expected": {k: v["expected"] for k, v in check.items()},
        "coverage_check": check,
        "coverage_unseen": coverage_summary(ok, n_draws, "coverage_unseen"),
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
