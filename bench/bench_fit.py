"""Fit benchmark: simulated episode sets of 2,000 / 20,000 / 200,000 rows, per sampler.

For each (size, sampler, model) a fresh subprocess (so that peak memory and compile caches
are per run) simulates clustered episodes (forecasting.evaluation.simulate), aggregates
them, builds the model, samples it (4 chains x the service's tuning, draws and target
acceptance by default) and reports compile time, sampling time, min bulk and tail ESS over
all parameters, min bulk ESS per second of sampling, divergences, leapfrog steps per draw,
peak memory, sampling time relative to the smallest size and the parameterisation chosen.
Prints a table (and JSON with --json).

`--models rev3 rev2` puts revision 3 (trigger clusters, one cell per episode) beside
revision 2 on the same data: no cluster terms, cells aggregated across triggers.

    PYTENSOR_FLAGS=base_compiledir=.cache/pytensor .venv/bin/python bench/bench_fit.py
    .venv/bin/python bench/bench_fit.py --sizes 0 --samplers numpyro nutpie  # 0: the seed file
    .venv/bin/python bench/bench_fit.py --sizes 2000 --samplers nutpie --models rev3 rev2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from forecasting.settings import SamplerSettings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZES = (2_000, 20_000, 200_000)
SAMPLERS = ("nutpie", "numpyro", "pymc")
MODELS = ("rev3", "rev2")


def run_one(size: int, sampler: str, draws: int, tune: int, seed: int, model_name: str,
            target_accept: float) -> dict:
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    sys.path.insert(0, str(ROOT))
    from forecasting.domain.cells import aggregate
    from forecasting.domain.codebook import load_codebook
    from forecasting.evaluation.simulate import simulate_episodes
    from forecasting.model.diagnostics import summary_table
    from forecasting.model.fitting import fit
    from forecasting.model.priors import load_priors
    from forecasting.model.pymc_model import build_model
    from forecasting.settings import SamplerSettings

    codebook = load_codebook(ROOT / "data" / "codebook.toml")
    priors = load_priors(ROOT / "priors" / "default.toml")
    t0 = time.perf_counter()
    if size == 0:  # the seed file (data/episodes.csv)
        from forecasting.domain.cells import episodes_frame
        from forecasting.domain.interchange import read_episodes

        episodes = episodes_frame(read_episodes(ROOT / "data" / "episodes.csv", codebook))
    else:
        episodes, _ = simulate_episodes(codebook, size, seed=seed)
    n_triggers = episodes["trigger_id"].nunique()
    n_reactions = len(episodes[["trigger_id", "partner"]].drop_duplicates())
    if model_name == "rev2":  # one pseudo-trigger: cells aggregate across triggers
        cells = aggregate(episodes.assign(trigger_id="all"), codebook)
        model = build_model(cells, priors, variant="no_clusters")
    else:
        cells = aggregate(episodes, codebook)
        model = build_model(cells, priors)
    t_prep = time.perf_counter() - t0
    settings = SamplerSettings(sampler=sampler, chains=4, draws=draws, tune=tune, seed=seed,
                               target_accept=target_accept)
    t0 = time.perf_counter()
    tree = fit(model, settings, extras=False)
    wall = time.perf_counter() - t0
    timings = json.loads(tree.attrs["timings"])
    summary = summary_table(tree)
    summary = summary[summary["sd"] > 1e-12]  # constant by construction: no diagnostic
    stats = tree.sample_stats
    rss_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                 resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    min_bulk = float(summary["ess_bulk"].min())
    return {
        "episodes": size or len(episodes),
        "model": model_name,
        "triggers": int(n_triggers),
        "reactions": int(n_reactions),
        "cells": cells.n_cells,
        "sampler": sampler,
        "prep_s": t_prep,
        "compile_s": timings["compile"],
        "sampling_s": timings["sampling"],
        "fit_wall_s": wall,
        "min_ess_bulk": min_bulk,
        "min_ess_tail": float(summary["ess_tail"].min()),
        "ess_bulk_per_s": min_bulk / timings["sampling"],
        "ess_bulk_per_wall_s": min_bulk / wall,
        "max_rhat": float(summary["r_hat"].max()),
        "divergences": int(stats["diverging"].sum()),
        "steps_per_draw": float(stats["n_steps"].mean()),
        "peak_rss_mb": rss_kb / 1024,
        "parameterization": model.forecast_config["parameterization"],
        "worst_ess_bulk": {k: round(float(v), 1)
                           for k, v in summary["ess_bulk"].nsmallest(3).items()},
        "worst_rhat": {k: round(float(v), 4) for k, v in summary["r_hat"].nlargest(3).items()},
    }


def table(rows: list[dict]) -> str:
    head = ("episodes", "model", "triggers", "cells", "sampler", "compile_s", "sampling_s", "fit_wall_s",
            "min_ess_bulk", "min_ess_tail", "ess_bulk_per_s", "max_rhat", "divergences",
            "steps_per_draw", "peak_rss_mb")
    lines = ["| " + " | ".join(head) + " | sampling / smallest size | centred effects |",
             "|" + "---|" * (len(head) + 2)]
    # the flatness target: sampling time relative to the same sampler's smallest size
    smallest = {}
    for r in sorted((r for r in rows if "error" not in r), key=lambda r: r["episodes"]):
        smallest.setdefault((r["sampler"], r["model"]), r["sampling_s"])
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['episodes']} | | {r['sampler']} | error: {r['error'][:80]} |")
            continue
        cells = [f"{r[h]:.4g}" if isinstance(r[h], float) else str(r[h]) for h in head]
        ratio = r["sampling_s"] / smallest[(r["sampler"], r["model"])]
        centred = ",".join(k for k, v in r["parameterization"].items() if v == "centered")
        lines.append("| " + " | ".join(cells) + f" | {ratio:.2f}x | {centred or '-'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--models", nargs="+", default=["rev3"], choices=MODELS)
    parser.add_argument("--draws", type=int, default=SamplerSettings.draws)
    parser.add_argument("--tune", type=int, default=SamplerSettings.tune)
    parser.add_argument("--target-accept", type=float, default=SamplerSettings.target_accept)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    parser.add_argument("--one", nargs=3, metavar=("SIZE", "SAMPLER", "MODEL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        row = run_one(int(args.one[0]), args.one[1], args.draws, args.tune, args.seed,
                      args.one[2], args.target_accept)
        print("RESULT " + json.dumps(row))
        return 0
    rows = []
    for size in args.sizes:
        for sampler, model in [(s, m) for s in args.samplers for m in args.models]:
            cmd = [sys.executable, __file__, "--one", str(size), sampler, model, "--draws",
                   str(args.draws), "--tune", str(args.tune), "--seed", str(args.seed),
                   "--target-accept", str(args.target_accept)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if found:
                rows.append(json.loads(found[-1][7:]))
            else:
                rows.append({"episodes": size, "sampler": sampler, "model": model,
                             "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]})
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
