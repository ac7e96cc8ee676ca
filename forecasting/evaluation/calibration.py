"""Calibration of probability forecasts: reliability (binned and PAVA), PIT, interval coverage.

Pure numpy/scipy, plus matplotlib (Agg) for PNGs. The PIT of a discrete outcome is randomised
(Czado, Gneiting & Held 2009): u = F(y - 1) + V * p(y), V ~ U(0, 1); it is uniform when the
forecasts are calibrated, and the share of u in [0.25, 0.75] ([0.05, 0.95]) is the coverage of
the central 50% (90%) predictive interval, which for a discrete outcome is only defined this way.
"""

from __future__ import annotations

import io

import numpy as np
from scipy import stats
from scipy.optimize import isotonic_regression

COVERAGE_LEVELS = (0.5, 0.9)


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10, strategy: str = "quantile"
                ) -> dict:
    """Binned reliability (with Jeffreys 90% intervals of the observed rate) and PAVA curve.

    `strategy` "quantile" makes bins of equal counts (most forecasts here are small
    probabilities, so equal-width bins would leave the top bins empty); "uniform" uses
    equal widths on [0, 1].
    """
    valid = ("quantile", "uniform")
    if strategy not in valid:
        raise ValueError(f"Requested strategy '{strategy}' but it must be one of {list(valid)}")
    p = np.asarray(p, dtype=float)
    y = np.asarray(y, dtype=float)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    else:
        edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for b in range(len(edges) - 1):
        mask = which == b
        n = int(mask.sum())
        if n == 0:
            continue
        k = float(y[mask].sum())
        lo, hi = stats.beta.ppf([0.05, 0.95], k + 0.5, n - k + 0.5)
        rows.append({"lower_edge": float(edges[b]), "upper_edge": float(edges[b + 1]), "n": n,
                     "mean_forecast": float(p[mask].mean()), "observed": k / n,
                     "observed_lo": float(lo), "observed_hi": float(hi)})
    pava = pava_curve(p, y)
    return {"bins": rows, "pava": pava, "strategy": strategy,
            "calibration_error": float(np.mean(np.abs(np.asarray(pava["calibrated"])
                                                      - np.asarray(pava["forecast"]))))}


def pava_curve(p: np.ndarray, y: np.ndarray) -> dict:
    """Isotonic (PAVA) regression of outcomes on forecasts: the CORP reliability curve
    (Dimitriadis, Gneiting & Jordan 2021). Returns sorted forecasts and their recalibrated
    values, non-decreasing by construction."""
    order = np.argsort(p, kind="stable")
    ps, ys = np.asarray(p, float)[order], np.asarray(y, float)[order]
    fitted = isotonic_regression(ys, increasing=True).x
    return {"forecast": ps.tolist(), "calibrated": np.asarray(fitted).tolist()}


def randomized_pit(probs: np.ndarray, levels: np.ndarray, seed: int = 0) -> np.ndarray:
    probs = np.asarray(probs, float)
    levels = np.asarray(levels, np.int64)
    cdf = np.cumsum(probs, axis=1)
    rows = np.arange(len(levels))
    below = np.where(levels > 0, cdf[rows, np.maximum(levels - 1, 0)], 0.0)
    v = np.random.default_rng(seed).uniform(size=len(levels))
    return np.clip(below + v * probs[rows, levels], 0.0, 1.0)


def pit_summary(pit: np.ndarray, bins: int = 10) -> dict:
    pit = np.asarray(pit, float)
    counts, edges = np.histogram(pit, bins=bins, range=(0, 1))
    coverage = {f"{c:g}": float(np.mean((pit >= (1 - c) / 2) & (pit <= (1 + c) / 2)))
                for c in COVERAGE_LEVELS}
    ks = stats.kstest(pit, "uniform")
    return {"histogram": counts.tolist(), "edges": edges.tolist(), "coverage": coverage,
            "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue), "n": int(pit.size)}


# -- plots ---------------------------------------------------------------------------------


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.subplots(*args, **kwargs)


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=80)
    finally:
        plt.close(fig)
    return buf.getvalue()


def plot_reliability(curves: dict[str, dict], title: str = "P(any restriction)") -> bytes:
    """Reliability diagram of one or more forecasters: binned points with intervals, PAVA line."""
    plt, (fig, ax) = _figure(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    for i, (name, rel) in enumerate(curves.items()):
        color = f"C{i}"
        ax.step(rel["pava"]["forecast"], rel["pava"]["calibrated"], where="post", color=color,
                label=f"{name} (PAVA)")
        if rel["bins"]:
            x = [b["mean_forecast"] for b in rel["bins"]]
            obs = np.array([b["observed"] for b in rel["bins"]])
            err = np.array([[o - b["observed_lo"], b["observed_hi"] - o]
                            for o, b in zip(obs, rel["bins"], strict=True)]).T
            ax.errorbar(x, obs, yerr=np.maximum(err, 0), fmt="o", color=color, ms=4,
                        capsize=2, label=f"{name} (binned, 90%)")
    ax.set_xlabel("forecast probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(title)
    top = max(0.05, min(1.0, 1.2 * max(max(r["pava"]["forecast"] + [0]) for r in curves.values())))
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    return _png(plt, fig)


def plot_pit(pit: dict[str, np.ndarray], bins: int = 10) -> bytes:
    plt, (fig, ax) = _figure(figsize=(6, 3.5))
    for i, (name, values) in enumerate(pit.items()):
        ax.hist(values, bins=bins, range=(0, 1), density=True, histtype="step", lw=1.5,
                color=f"C{i}", label=name)
    ax.axhline(1.0, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("randomised PIT")
    ax.set_ylabel("density")
    ax.set_title("PIT of held-out episodes (uniform if calibrated)")
    ax.legend(fontsize=7)
    return _png(plt, fig)


def plot_score_differences(comparisons: dict[str, dict[str, dict]]) -> bytes:
    """Model - baseline mean score difference per baseline and score, with intervals.

    `comparisons`: baseline -> score -> paired_bootstrap dict. Negative = the model is better.
    """
    baselines = list(comparisons)
    scores = list(next(iter(comparisons.values()))) if comparisons else []
    plt, (fig, axes) = _figure(1, max(len(scores), 1), figsize=(2.6 * max(len(scores), 1), 3.2),
                               sharey=True, squeeze=False)
    for ax, score in zip(axes[0], scores, strict=False):
        for j, base in enumerate(baselines):
            c = comparisons[base][score]
            ax.errorbar([c["mean"]], [j], xerr=[[c["mean"] - c["lo"]], [c["hi"] - c["mean"]]],
                        fmt="o", color="C0" if c["hi"] < 0 else ("C3" if c["lo"] > 0 else "C7"),
                        capsize=3)
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(score, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(range(len(baselines)), baselines)
    fig.suptitle("model - baseline (mean loss; < 0: model better)", fontsize=9)
    return _png(plt, fig)
