"""Diagnostic plots of a fitted model as PNG bytes (arviz-plots on headless matplotlib).

`render(tree, name)` is the one entry point the API and the CLI need; `PLOTS` maps each name to
its function (tree -> PNG bytes).
Each plot says which groups of the tree it needs, so a missing one is a clear error
(`PlotUnavailableError`) rather than an exception from deep inside arviz.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib

# Servers have no display, and a GUI backend picked from $DISPLAY would break in worker threads.
matplotlib.use("Agg")

import arviz_plots as azp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from forecasting.model.arithmetic import PARAMETERS  # noqa: E402

DPI = 80
FOREST_VARS = ("partner_eff", "type_eff")
# Parameters worth a trace: the model's top-level ones (scalars and the cutpoints, those the
# priors set), not the hundreds of cell effects.
TOP_LEVEL = tuple(sorted(PARAMETERS))
# pyplot keeps global state; requests rendering in parallel threads must take turns.
_PYPLOT_LOCK = threading.Lock()


class UnknownPlotError(ValueError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"Requested plot '{name}' but it must be one of {sorted(_SPECS)}")


class PlotUnavailableError(LookupError):
    """The model version lacks what the plot is drawn from (e.g. its prior draws)."""


@dataclass(frozen=True)
class Plot:
    draw: Callable[[xr.DataTree], Figure]
    needs: tuple[str, ...]


def _figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        plt.close(fig)  # pyplot keeps every figure alive until closed
    return buf.getvalue()


def _scalar_vars(ds: xr.Dataset) -> list[str]:
    names = [n for n in TOP_LEVEL if n in ds.data_vars]
    if not names:
        raise PlotUnavailableError(f"the posterior has no scalar parameters to plot (none of "
                                   f"{list(TOP_LEVEL)})")
    return names


def _posterior_scalars(tree: xr.DataTree) -> list[str]:
    return _scalar_vars(tree["posterior"].to_dataset())


def _trace(tree: xr.DataTree) -> Figure:
    return azp.plot_trace_dist(tree, var_names=_posterior_scalars(tree)).get_viz("figure")


def _rank(tree: xr.DataTree) -> Figure:
    return azp.plot_rank(tree, var_names=_posterior_scalars(tree)).get_viz("figure")


def _forest(tree: xr.DataTree) -> Figure:
    present = [v for v in FOREST_VARS if v in tree["posterior"].data_vars]
    if not present:
        raise PlotUnavailableError(f"the posterior has none of {list(FOREST_VARS)}")
    return azp.plot_forest(tree, var_names=present, combined=True).get_viz("figure")


def _energy(tree: xr.DataTree) -> Figure:
    if "energy" not in tree["sample_stats"].data_vars:
        raise PlotUnavailableError("sample_stats has no 'energy' (the sampler did not record it)")
    return azp.plot_energy(tree).get_viz("figure")


def _prior_posterior(tree: xr.DataTree) -> Figure:
    prior = tree["prior"].to_dataset()
    names = [n for n in _posterior_scalars(tree) if n in prior.data_vars]
    if not names:
        raise PlotUnavailableError("the prior group has none of the posterior's scalar parameters")
    return azp.plot_prior_posterior(tree, var_names=names).get_viz("figure")


def level_frequencies(counts: np.ndarray) -> np.ndarray:
    """(..., cell, level) counts -> (..., level) share of all episodes at each level."""
    totals = counts.sum(axis=(-2, -1), keepdims=True)[..., 0]
    return counts.sum(axis=-2) / np.maximum(totals, 1)


def _ppc(tree: xr.DataTree) -> Figure:
    # A rootogram of 2-D (cell, level) counts fails in arviz-plots (STACK.md section 7), and
    # the question is simply "does the model reproduce how often each level happens?".
    observed = tree["observed_data"].to_dataset()
    predicted = tree["posterior_predictive"].to_dataset()
    if "level_counts" not in observed or "level_counts" not in predicted:
        raise PlotUnavailableError("posterior_predictive/observed_data lack 'level_counts'")
    obs = level_frequencies(observed["level_counts"].transpose("cell", "level").values)
    rep = predicted["level_counts"].transpose("chain", "draw", "cell", "level").values
    rep = level_frequencies(rep).reshape(-1, obs.shape[-1])
    lo, mid, hi = np.quantile(rep, [0.05, 0.5, 0.95], axis=0)
    levels = np.arange(obs.shape[-1])
    fig = plt.figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.bar(levels, obs, color="0.8", label="observed")
    ax.errorbar(levels, mid, yerr=[mid - lo, hi - mid], fmt="o", color="C0", capsize=4,
                label="posterior predictive (median, 90%)")
    ax.set_xticks(levels)
    ax.set_xlabel("restriction level")
    ax.set_ylabel("share of episodes")
    ax.set_title("Posterior predictive check: level frequencies")
    ax.legend()
    return fig


_SPECS: dict[str, Plot] = {
    # trace and density of the scalar parameters
    "trace": Plot(_trace, ("posterior",)),
    # rank ECDFs per chain of the scalar parameters
    "rank": Plot(_rank, ("posterior",)),
    # intervals of the partner and type effects
    "forest": Plot(_forest, ("posterior",)),
    # energy and energy-transition distributions
    "energy": Plot(_energy, ("sample_stats",)),
    # observed vs replicated frequencies of each level
    "ppc": Plot(_ppc, ("posterior_predictive", "observed_data")),
    # prior vs posterior of the scalar parameters
    "prior_posterior": Plot(_prior_posterior, ("posterior", "prior")),
}


def groups_needed(name: str) -> tuple[str, ...]:
    """The groups of a version's tree that plot `name` reads (load only these: a lean
    version recomputes its posterior predictive when it is read)."""
    if name not in _SPECS:
        raise UnknownPlotError(name)
    return _SPECS[name].needs


def render(tree: xr.DataTree, name: str) -> bytes:
    """The plot `name` of a model version's tree as PNG bytes."""
    if name not in _SPECS:
        raise UnknownPlotError(name)
    plot = _SPECS[name]
    missing = [g for g in plot.needs if g not in tree.children]
    if missing:
        raise PlotUnavailableError(
            f"plot '{name}' needs the group(s) {missing}, which this model version lacks "
            f"(it has {sorted(tree.children)})")
    with _PYPLOT_LOCK:
        before = set(plt.get_fignums())
        try:
            fig = plot.draw(tree)
        except BaseException:
            for number in set(plt.get_fignums()) - before:  # a half-drawn figure stays open
                plt.close(number)
            raise
        return _figure_png(fig)


def trace(tree: xr.DataTree) -> bytes:
    return render(tree, "trace")


def rank(tree: xr.DataTree) -> bytes:
    return render(tree, "rank")


def forest(tree: xr.DataTree) -> bytes:
    return render(tree, "forest")


def energy(tree: xr.DataTree) -> bytes:
    return render(tree, "energy")


def ppc(tree: xr.DataTree) -> bytes:
    return render(tree, "ppc")


def prior_posterior(tree: xr.DataTree) -> bytes:
    return render(tree, "prior_posterior")


def _waterfall(answer: dict) -> Figure:
    explanation = answer["explanation"]
    terms = explanation["terms"]
    labels = [t["label"] for t in terms] + ["linear predictor (model terms)",
                                            "with the cluster terms"]
    fig = plt.figure(figsize=(10, 0.45 * len(labels) + 1.8), layout="constrained")
    ax = fig.add_subplot()
    start, ys = 0.0, np.arange(len(labels))[::-1]
    for y, t in zip(ys, terms, strict=False):
        mean, (lo, hi) = t["log_odds"]["mean"], t["log_odds"]["ci90"]
        if t["kind"] == "cluster" and t["term"] == "event":
            # the model terms' total first, then the clusters on top of it
            start = explanation["linear_predictor"]["mean"]
        ax.barh(y, mean, left=start, color="C3" if mean > 0 else "C0",
                alpha=0.5 if t["kind"] == "cluster" else 0.8)
        ax.errorbar(start + mean, y, xerr=[[mean - lo], [hi - mean]], fmt="none", color="0.3",
                    capsize=3)
        start += mean
    for y, key in zip(ys[-2:], ("linear_predictor", "effective_linear_predictor"), strict=True):
        stats = explanation[key]
        ax.barh(y, stats["mean"], color="0.6")
        ax.errorbar(stats["mean"], y, xerr=[[stats["mean"] - stats["ci90"][0]],
                                            [stats["ci90"][1] - stats["mean"]]],
                    fmt="none", color="0.2", capsize=3)
    cut = explanation["cutpoint"]["mean"]
    ax.axvline(cut, color="k", linestyle="--", linewidth=1)
    ax.text(cut, ys[0] + 0.6, "cutpoint 0|1: P(any restriction) = 0.5 ", fontsize=8,
            va="bottom", ha="right")
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlabel("log-odds (bars: posterior means; whiskers: 90% intervals of each term)")
    p = explanation["any_restriction"]
    scenario = answer["scenario"]
    ax.set_title(f"{answer['partner']} restricting {answer['intel_type']} after "
                 + (f"trigger {answer['trigger_id']}" if "trigger_id" in answer
                    else f"a {scenario['trigger_type']} (severity {scenario['severity']}, "
                         f"alignment {scenario['alignment']})")
                 + f"\nP(any restriction) {p['mean']:.3f}, 90% [{p['ci90'][0]:.3f}, "
                   f"{p['ci90'][1]:.3f}]; model {answer['model']['version']}", fontsize=9)
    return fig


def explanation_waterfall(answer: dict) -> bytes:
    """A waterfall of an explained forecast's terms (forecasting.services.forecasts.
    explained_forecast's answer) as PNG bytes: each term's mean from where the previous ended,
    its 90% interval, the linear predictor, then the cluster terms and the cutpoint."""
    with _PYPLOT_LOCK:
        before = set(plt.get_fignums())
        try:
            fig = _waterfall(answer)
        except BaseException:
            for number in set(plt.get_fignums()) - before:
                plt.close(number)
            raise
        return _figure_png(fig)


PLOTS: dict[str, Callable[[xr.DataTree], bytes]] = {
    "trace": trace, "rank": rank, "forest": forest, "energy": energy, "ppc": ppc,
    "prior_posterior": prior_posterior,
}
