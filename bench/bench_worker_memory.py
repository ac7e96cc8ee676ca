"""The refit worker's resident memory refit after refit, without and with `release_memory`.

    .venv/bin/python bench/bench_worker_memory.py [--refits 15] [--draws 200]

Two child processes, each on its own temporary instance with the seed episodes, run the
worker's task (`RefitService.run`) on one new episode (a new trigger) at a time, as the
worker does after each coded event: `before` with `forecasting.refits.release_memory`
replaced by a no-op (the code before it existed), `after` as shipped. The parent has them
refit in turn, one refit each, so that both see the same machine load, and prints their
resident size (VmRSS) after each refit side by side, the growth per refit from the third
on (least squares), and the seconds release_memory took. Sampler: 2 chains x --draws draws
after as many tuning steps; the gate is loosened (bench/reliability/common.LOOSE_GATE) so
that every refit is promoted and pruned as in the soak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "reliability"))
from common import LOOSE_GATE, new_episodes  # noqa: E402

MODES = ("before", "after")


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, draws: int, refits: int) -> None:
    """Set up an instance, then one refit per line read from stdin; one JSON line each."""
    from huey import MemoryHuey

    import forecasting.refits as refits_module
    from forecasting.model.sampling import warm_up
    from forecasting.services.episodes import import_episodes
    from forecasting.services.priors import active_priors
    from forecasting.services.setup import initialise, seed_if_empty
    from forecasting.settings import load_settings

    instance = Path(tempfile.mkdtemp(prefix=f"bench-worker-memory-{mode}-"))
    env = dict(os.environ, FORECAST_INSTANCE=str(instance), FORECAST_CHAINS="2",
               FORECAST_DRAWS=str(draws), FORECAST_TUNE=str(draws), FORECAST_REFIT_DELAY="0",
               FORECAST_REFIT_SCHEDULE="", **LOOSE_GATE)
    settings = load_settings(env)
    database = initialise(settings)
    seed_if_empty(database, settings)
    service = refits_module.RefitService.from_settings(settings, database,
                                                       huey=MemoryHuey(f"bench-{mode}"))
    warm_up(database.episodes.frame(), service.codebook, active_priors(database, settings)[0],
            settings.sampler)
    shipped = refits_module.release_memory
    spent = []

    def timed_release():
        t0 = time.perf_counter()
        if mode == "after":
            shipped()
        spent.append(time.perf_counter() - t0)

    refits_module.release_memory = timed_release
    print(json.dumps({"ready": rss_mb()}), flush=True)
    for i, episode in enumerate(new_episodes(refits, f"mem-{mode}")):
        sys.stdin.readline()
        t0 = time.perf_counter()
        queued = import_episodes(database, service.codebook, service, [(2, episode)],
                                 actor="bench", source="bench").refit
        record = service.run(queued["id"])
        print(json.dumps({"refit": i + 1, "status": record["status"], "rss": rss_mb(),
                          "seconds": time.perf_counter() - t0, "release": spent[-1]}),
              flush=True)


def start(mode: str, args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", mode, "--draws",
                             str(args.draws), "--refits", str(args.refits)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTENSOR_FLAGS=os.environ.get(
                                "PYTENSOR_FLAGS", f"base_compiledir={HERE.parent / '.cache' / 'pytensor'}")))


def read(proc: subprocess.Popen) -> dict:
    for line in proc.stdout:
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"child exited {proc.wait()}")


def slope(values: list[float]) -> float:
    return float(np.polyfit(np.arange(len(values)), values, 1)[0]) if len(values) > 1 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refits", type=int, default=15)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--child", choices=MODES)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.draws, args.refits)
        return 0
    procs = {mode: start(mode, args) for mode in MODES}
    ready = {mode: read(proc)["ready"] for mode, proc in procs.items()}
    print(f"2 chains x {args.draws} draws; resident MB after warm-up: before {ready['before']:.0f}, "
          f"after {ready['after']:.0f}")
    print(f"{'refit':>5} {'before MB':>10} {'after MB':>9} {'release s':>10} {'status':>10}")
    rows = {mode: [] for mode in MODES}
    for i in range(args.refits):
        for mode in MODES[::1 if i % 2 == 0 else -1]:  # alternate who goes first
            procs[mode].stdin.write("go\n")
            procs[mode].stdin.flush()
            rows[mode].append(read(procs[mode]))
        b, a = rows["before"][-1], rows["after"][-1]
        print(f"{i + 1:>5} {b['rss']:>10.0f} {a['rss']:>9.0f} {a['release']:>10.2f} "
              f"{b['status'] + '/' + a['status']:>10}", flush=True)
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    for mode in MODES:
        tail = [r["rss"] for r in rows[mode][2:]]
        print(f"{mode}: {tail[0]:.0f} MB after refit 3, {tail[-1]:.0f} after refit "
              f"{args.refits}: {slope(tail):+.1f} MB per refit (least squares, refits 3-"
              f"{args.refits}); median refit {np.median([r['seconds'] for r in rows[mode]]):.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
