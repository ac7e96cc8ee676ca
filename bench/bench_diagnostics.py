"""What a refit spends on diagnostics: `diagnose` as of a baseline commit vs now, side by side.

    .venv/bin/python bench/bench_diagnostics.py [--tree FIT.nc] [--repeats 5] [--baseline REV]
                                                [--arviz]

Without --tree, fits the seed episodes with the service's sampler settings first (and saves
the tree to --save, if given). Then, on the same tree, alternating in one process: `diagnose`
with forecasting/model/{convergence,diagnostics}.py as of --baseline (read with git show)
and as now, checking that both return the same figures; with --arviz also the convergence
table from az.rhat / az.ess / az.mcse one entry at a time (what summary_table did before
convergence.py) and from convergence.py. Prints wall seconds per repeat (and the CPU
seconds of diagnose, all threads), each part's median and the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
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


def baseline_diagnostics(rev: str):
    """forecasting.model.diagnostics as of `rev`, calling convergence.py as of `rev` (the
    kernels it imports from elsewhere are today's)."""
    import types

    def module(name: str):
        source = subprocess.run(["git", "show", f"{rev}:forecasting/model/{name}.py"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout
        mod = types.ModuleType(f"baseline_{name}")
        exec(compile(source, f"{rev}:forecasting/model/{name}.py", "exec"), mod.__dict__)
        return mod

    convergence = module("convergence")
    diagnostics = module("diagnostics")
    diagnostics.convergence = convergence
    return diagnostics


def figures(diag: dict) -> str:
    """Everything `diagnose` reports but its timings, to compare two implementations."""
    return json.dumps({k: v for k, v in diag.items() if k != "timings"}, sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="a fit's tree (netCDF) instead of a new fit")
    parser.add_argument("--save", type=Path, help="save the new fit's tree here")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", default="a92929d",
                        help="commit whose diagnostics to compare (default: before the eighth "
                             "session's changes)")
    parser.add_argument("--arviz", action="store_true",
                        help="also time the convergence table by ArviZ, one entry at a time")
    args = parser.parse_args()

    import xarray as xr

    from forecasting.model.diagnostics import diagnose, summary_table
    old = baseline_diagnostics(args.baseline)

    if args.tree:
        tree = xr.open_datatree(args.tree, engine="h5netcdf").load()
    else:
        tree = seed_tree()
        if args.save:
            tree.to_netcdf(args.save, engine="h5netcdf")
    n = tree.posterior.sizes
    print(f"posterior: {n['chain']} chains x {n['draw']} draws, "
          f"{len(summary_table(tree))} scalar entries")
    same = figures(old.diagnose(tree)) == figures(diagnose(tree))  # warm: numba kernels
    print(f"baseline {args.baseline} and now report the same figures: {same}")
    rows: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        if args.arviz:
            t0 = time.perf_counter()
            arviz_table(tree)
            rows.setdefault("arviz table", []).append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            summary_table(tree)
            rows.setdefault("batched table", []).append(time.perf_counter() - t0)
        for name, run in (("baseline", old.diagnose), ("now", diagnose)):
            t0, cpu0 = time.perf_counter(), time.process_time()
            timings = run(tree)["timings"]
            rows.setdefault(f"{name}: diagnose", []).append(time.perf_counter() - t0)
            # CPU seconds of all threads: steadier than wall time on a shared machine
            rows.setdefault(f"{name}: diagnose CPU", []).append(time.process_time() - cpu0)
            for part, value in timings.items():
                if part.startswith("diagnostics_"):
                    rows.setdefault(f"{name}: {part[len('diagnostics_'):]}", []).append(value)
    for name, values in sorted(rows.items(), key=lambda kv: kv[0].split(": ")[::-1]):
        print(f"{name:28s} median {statistics.median(values):6.2f} s   "
              f"({', '.join(f'{v:.2f}' for v in values)})")
    ratios = [a / b for a, b in zip(rows["baseline: diagnose"], rows["now: diagnose"],
                                    strict=True)]
    print(f"baseline / now, diagnose per repeat: {', '.join(f'{r:.2f}' for r in ratios)}")
    if args.arviz:
        ratios = [a / b for a, b in zip(rows["arviz table"], rows["batched table"], strict=True)]
        print(f"arviz / batched table, per repeat: {', '.join(f'{r:.2f}' for r in ratios)}")


if __name__ == "__main__":
    main()
