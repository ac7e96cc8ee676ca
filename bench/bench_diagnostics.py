"""What a refit spends on diagnostics, and the convergence table by ArviZ vs batched, side by side.

    .venv/bin/python bench/bench_diagnostics.py [--tree FIT.nc] [--repeats 3]

Without --tree, fits the seed episodes with the service's sampler settings first (and saves
the tree to --save, if given). Then, on the same tree, alternating in one process: the
convergence table from az.rhat / az.ess / az.mcse one entry at a time (what
diagnostics.summary_table did before) and from forecasting.model.convergence (what it does
now), and the parts of `diagnose`. Prints seconds per repeat and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def seed_tree():
    from forecasting.domain.cells import episodes_frame
    from forecasting.domain.codebook import load_codebook
    from forecasting.domain.interchange import read_episodes
    from forecasting.model.fitting import fit_and_diagnose
    from forecasting.model.priors import load_priors
    from forecasting.settings import GateThresholds, SamplerSettings

    codebook = load_codebook(ROOT / "data" / "codebook.toml")
    frame = episodes_frame(read_episodes(ROOT / "data" / "episodes.csv", codebook))
    result = fit_and_diagnose(frame, codebook, load_priors(ROOT / "priors" / "default.toml"),
                              SamplerSettings(), GateThresholds())
    return result.idata


def arviz_table(tree):
    """The convergence figures as ArviZ computes them, one entry at a time."""
    import arviz as az
    import xarray as xr

    data = xr.DataTree.from_dict({"posterior": tree.posterior.to_dataset()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (az.rhat(data), az.ess(data, method="bulk"), az.ess(data, method="tail"),
                az.mcse(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="a fit's tree (netCDF) instead of a new fit")
    parser.add_argument("--save", type=Path, help="save the new fit's tree here")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import xarray as xr

    from forecasting.model.diagnostics import diagnose, summary_table

    if args.tree:
        tree = xr.open_datatree(args.tree, engine="h5netcdf").load()
    else:
        tree = seed_tree()
        if args.save:
            tree.to_netcdf(args.save, engine="h5netcdf")
    n = tree.posterior.sizes
    print(f"posterior: {n['chain']} chains x {n['draw']} draws, "
          f"{len(summary_table(tree))} scalar entries")
    diagnose(tree)  # warm: numba kernels compiled or loaded from their cache
    rows = {"arviz table": [], "batched table": [], "diagnose": []}
    parts: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        arviz_table(tree)
        rows["arviz table"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        summary_table(tree)
        rows["batched table"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        timings = diagnose(tree)["timings"]
        rows["diagnose"].append(time.perf_counter() - t0)
        for name, value in timings.items():
            if name.startswith("diagnostics_"):
                parts.setdefault(name, []).append(value)
    for name, values in {**rows, **parts}.items():
        print(f"{name:32s} median {statistics.median(values):6.2f} s   "
              f"({', '.join(f'{v:.2f}' for v in values)})")
    ratio = [a / b for a, b in zip(rows["arviz table"], rows["batched table"], strict=True)]
    print(f"arviz / batched, per repeat: {', '.join(f'{r:.2f}' for r in ratio)}")


if __name__ == "__main__":
    main()
