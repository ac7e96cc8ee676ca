"""What a prior set implies before any data: the prior predictive, as numbers and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pymc as pm

from forecasting.domain.cells import Cells, empty_cells
from forecasting.domain.codebook import Codebook
from forecasting.model.arithmetic import FORECAST_VARIABLES, level_probabilities, linear_predictor
from forecasting.model.priors import PriorSet
from forecasting.model.pymc_model import build_model

PRIOR_PREDICTIVE_DRAWS = 500


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
    names = list(FORECAST_VARIABLES)
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
    # one scenario per draw: the diagonal of every draw's eta over every draw's scenario
    rows = np.arange(draws)
    eta = linear_predictor(d, p_i, t_i, tt_i, sev, ali)[rows, rows]
    probs = level_probabilities(eta, d["cutpoints"])
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
