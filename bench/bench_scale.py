"""A whole fit at scale: simulated clustered episodes, `fit` with every group, then `diagnose`.

For each size a fresh subprocess (peak memory is per run) simulates clustered episodes
(forecasting.evaluation.simulate), builds model revision 3 and runs what `fit_and_diagnose`
runs (sampling, log likelihood, log prior, prior and posterior predictive, diagnostics),
reporting the time of each step, the whole fit, peak RSS, 0-divergence / R-hat / min bulk
ESS targets and min bulk ESS per second of sampling. `--rev2` adds revision 2 on the same
data (no cluster terms, cells aggregated across triggers; sampling and convergence only).
A watchdog ends a run whose RSS passes --max-rss-gb (the machine is shared).

    PYTENSOR_FLAGS=base_compiledir=.cache/pytensor .venv/bin/python bench/bench_scale.py \\
        --sizes 2000 20000 200000 --draws 1000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forecasting.settings import SamplerSettings  # noqa: E402


def _rss_gb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024**2
    return 0.0


def watchdog(limit_gb: float) -> None:
    """End this process (exit code 3) when its RSS passes `limit_gb`."""
    def watch():
        while True:
            if _rss_gb() > limit_gb:
                print(f"RSS above {limit_gb} GB: stopped", file=sys.stderr, flush=True)
                os._exit(3)
            time.sleep(0.5)
    threading.Thread(target=watch, daemon=True).start()


def run_one(size: int, model_name: str, draws: int, tune: int, seed: int,
            target_accept: float, sweep: bool | None = None,
            centring: bool | None = None) -> dict:
    from forecasting.domain.cells import aggregate
    from forecasting.domain.codebook import load_codebook
    from forecasting.evaluation.simulate import simulate_episodes
    from forecasting.model.diagnostics import diagnose
    from forecasting.model.fitting import fit
    from forecasting.model.priors import load_priors
    from forecasting.model.pymc_model import build_model

    codebook = load_codebook(ROOT / "data" / "codebook.toml")
    priors = load_priors(ROOT / "priors" / "default.toml")
    t_start = time.perf_counter()
    episodes, _ = simulate_episodes(codebook, size, seed=seed)
    rev2 = model_name == "rev2"
    cells = aggregate(episodes.assign(trigger_id="all") if rev2 else episodes, codebook)
    model = build_model(cells, priors, variant="no_clusters" if rev2 else "full",
                        sweep=sweep, centring=centring)
    t_prep = time.perf_counter() - t_start
    settings = SamplerSettings(chains=4, draws=draws, tune=tune, seed=seed,
                               target_accept=target_accept)
    t0 = time.perf_counter()
    tree = fit(model, settings, extras=not rev2)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    if rev2:
        from forecasting.model.diagnostics import summary_table

        table = summary_table(tree)
        table = table[table["sd"] > 1e-12]
        diag = {"min_ess_bulk": float(table["ess_bulk"].min()),
                "min_ess_tail": float(table["ess_tail"].min()),
                "max_rhat": float(table["r_hat"].max()),
                "divergences": int(tree.sample_stats["diverging"].sum()),
                "worst": {"ess_bulk": table["ess_bulk"].nsmallest(3).to_dict()},
                "timings": json.loads(tree.attrs["timings"])}
    else:
        diag = diagnose(tree)
    t_diag = time.perf_counter() - t0
    timings = diag["timings"]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {
        "episodes": size, "model": model_name,
        "triggers": int(episodes["trigger_id"].nunique()),
        "reactions": int(len(episodes[["trigger_id", "partner"]].drop_duplicates())),
        "cells": cells.n_cells, "draws": f"{settings.chains}x{draws} after {tune}",
        "target_accept": target_accept, "swept": model.forecast_config.get("swept", []),
        "centred_triggers": model.forecast_config.get("centred_triggers", False),
        "prep_s": t_prep, "compile_s": timings.get("compile"),
        "sampling_s": timings["sampling"],
        "extras_s": {k: timings.get(k) for k in ("log_likelihood", "log_prior", "prior_predictive",
                                                 "posterior_predictive")},
        "fit_s": t_fit, "diagnose_s": t_diag,
        "diagnose_parts_s": {k: v for k, v in timings.items() if k.startswith("diagnostics_")},
        "total_s": time.perf_counter() - t_start,
        "extras_draws": tree.attrs.get("extras_draws"),
        "divergences": diag["divergences"], "max_rhat": diag["max_rhat"],
        "min_ess_bulk": diag["min_ess_bulk"], "min_ess_tail": diag["min_ess_tail"],
        "ess_bulk_per_s": diag["min_ess_bulk"] / timings["sampling"],
        "steps_per_draw": float(tree.sample_stats["n_steps"].mean()),
        "worst_ess_bulk": diag["worst"]["ess_bulk"],
        "worst_rhat": diag["worst"].get("rhat"),
        "peak_rss_gb": rss,
        "load_avg": os.getloadavg(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000, 200_000])
    parser.add_argument("--rev2", action="store_true", help="revision 2 on the same data too")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target-accept", type=float, default=SamplerSettings.target_accept)
    parser.add_argument("--no-sweep", action="store_true",
                        help="never sweep the trigger-level terms (default: the model's choice)")
    parser.add_argument("--no-centring", action="store_true",
                        help="never partly centre the triggers' mean cluster coordinates "
                             "(default: the model's choice)")
    parser.add_argument("--max-rss-gb", type=float, default=7.5)
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        watchdog(args.max_rss_gb)
        row = run_one(int(args.one[0]), args.one[1], args.draws, args.tune, args.seed,
                      args.target_accept, False if args.no_sweep else None,
                      False if args.no_centring else None)
        print("RESULT " + json.dumps(row, default=float), flush=True)
        return 0
    for size in args.sizes:
        for model in ["rev3", "rev2"] if args.rev2 else ["rev3"]:
            cmd = [sys.executable, __file__, "--one", str(size), model, "--draws",
                   str(args.draws), "--tune", str(args.tune), "--seed", str(args.seed),
                   "--target-accept", str(args.target_accept),
                   *(["--no-sweep"] if args.no_sweep else []),
                   *(["--no-centring"] if args.no_centring else []),
                   "--max-rss-gb", str(args.max_rss_gb)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            row = json.loads(found[-1][7:]) if found else {
                "episodes": size, "model": model, "returncode": proc.returncode,
                "error": (proc.stderr.strip().splitlines() or ["no output"])[-3:]}
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
