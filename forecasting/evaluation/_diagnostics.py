"""A few cheap convergence numbers for evaluation fits (not the serving gate).

Backtest and SBC fits are many and small; they record R-hat, bulk ESS and divergences of the
low-dimensional parameters so that a report can show whether any fold or simulation was
unhealthy, without the full diagnostics (LOO, predictive checks) of a served fit.
"""

from __future__ import annotations

import xarray as xr

from forecasting.model.arithmetic import PARAMETERS
from forecasting.model.diagnostics import summary_table

WATCHED = tuple(PARAMETERS)  # the top-level parameters


def quick_diagnostics(tree: xr.DataTree) -> dict:
    posterior = tree["posterior"].to_dataset()
    names = [n for n in WATCHED if n in posterior]
    out = {"max_rhat": None, "min_ess_bulk": None, "divergences": None}
    if names and posterior.sizes.get("chain", 1) > 1:
        summary = summary_table(tree, names)
        out["max_rhat"] = float(summary["r_hat"].max())
        out["min_ess_bulk"] = float(summary["ess_bulk"].min())
    if "sample_stats" in tree.children and "diverging" in tree["sample_stats"]:
        out["divergences"] = int(tree["sample_stats"]["diverging"].sum())
    return out
