"""Soak: steady read load for a long time while a refit runs every minute.

    .venv/bin/python bench/reliability/soak.py [--minutes 5] [--refit-every 60] [--readers 4]
        [--quick] [--instance DIR]

Starts `forecast serve` (gunicorn, 2 workers) and `forecast worker` on a temporary instance
with the seed episodes and a small fitted model (2 chains x 100 draws after 100 tuning steps,
so that a refit fits in a minute on 2 busy cores; the gate loosened). --readers threads read
forecasts (one cell, varying scenarios), the grid, the model list and the current model's
metadata without pause; every --refit-every seconds one new episode is posted, which queues a
refit that the worker fits, gates and promotes, so the web workers switch versions under load.
Every 5 s the resident memory and open file descriptors of the server's processes and of the
refit worker (with their children) are sampled, with the registry's size on disk.

Prints: requests and failures (any answer but 200/304, or no answer), p50/p99 latency while a
refit runs and outside refits, the refits' outcomes, and memory, descriptors and registry size
at the start and end with their least-squares slope per hour. Exits 1 on any failed request,
on a refit ending in `error`, or when open descriptors grow (slope over the run above 10).
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime as dt
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Instance,
    check,
    descendants,
    new_episodes,
    open_fds,
    percentile_ms,
    print_table,
    provenance,
    rss_mb,
    slope_per_hour,
)
from kill_worker import start_worker  # noqa: E402

PARTNERS = ["GBR", "CAN", "AUS", "DEU", "FRA", "ISR", "SAU", "JPN", "KOR", "UKR"]
TYPES = ["sigint", "humint", "geoint", "cyber", "ct", "military"]
TRIGGERS = ["disclosure_incident", "policy_divergence", "legal_case", "leader_rhetoric"]


def read_paths(rng: random.Random):
    while True:
        kind = rng.choices(["forecast", "grid", "models", "current"], [6, 1, 2, 1])[0]
        if kind == "forecast":
            yield kind, (f"/v1/forecasts?partner={rng.choice(PARTNERS)}"
                         f"&intel_type={rng.choice(TYPES)}&trigger_type={rng.choice(TRIGGERS)}"
                         f"&severity={rng.randint(0, 3)}&alignment={rng.randint(0, 3)}")
        elif kind == "grid":
            yield kind, f"/v1/forecasts/grid?severity={rng.randint(0, 3)}&limit=20"
        elif kind == "models":
            yield kind, "/v1/models"
        else:
            yield kind, "/v1/models/current"


def reader(url: str, seed: int, stop: threading.Event, out: list, failures: list) -> None:
    session, paths = requests.Session(), read_paths(random.Random(seed))
    while not stop.is_set():
        kind, path = next(paths)
        start, t0 = time.time(), time.perf_counter()
        try:
            r = session.get(url + path, timeout=60)
            status = r.status_code
        except requests.RequestException as exc:
            failures.append((start, path, type(exc).__name__))
            session = requests.Session()
            continue
        out.append((start, kind, time.perf_counter() - t0))
        if status not in (200, 304):
            failures.append((start, path, f"{status} {r.text[:200]}"))


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6 if path.exists() else 0


def sampler(server_pid: int, worker_ref: list, registry: Path, stop: threading.Event,
            out: list) -> None:
    while not stop.wait(5):
        server = descendants(server_pid)
        worker = descendants(worker_ref[0].pid)
        out.append({
            "t": time.time(),
            "server_rss": sum(filter(None, map(rss_mb, server))),
            "server_fds": sum(filter(None, map(open_fds, server))),
            "server_procs": len(server),
            "worker_rss": sum(filter(None, map(rss_mb, worker))),
            "worker_fds": sum(filter(None, map(open_fds, worker))),
            "registry_mb": du_mb(registry),
        })


def parse_time(value: str | None) -> float | None:
    return dt.datetime.fromisoformat(value).timestamp() if value else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", help="instance folder (default: a new temporary one)")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--refit-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 minutes")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    minutes = 2.0 if args.quick else args.minutes

    inst = Instance.create(args.instance, {"FORECAST_REFIT_DELAY": "0"},
                           prefix="reliability-soak-")
    print(f"instance {inst.path}; {provenance()}", flush=True)
    rows: list[tuple] = []
    latencies, failures, samples = [], [], []
    stop = threading.Event()
    try:
        inst.prepare(fit=True)
        server = inst.serve(workers=args.web_workers)
        worker, ready_s = start_worker(inst)
        worker_ref = [worker]
        print(f"worker ready in {ready_s:.0f} s; soaking for {minutes:g} min", flush=True)
        coder = requests.Session()
        coder.headers["Authorization"] = f"Bearer {inst.tokens['coder']}"
        episodes = iter(new_episodes(int(minutes * 60 / args.refit_every) + 5, "soak",
                                     seed=args.seed))
        threads = [threading.Thread(target=reader, args=(server.url, args.seed + i, stop,
                                                         latencies, failures))
                   for i in range(args.readers)]
        threads.append(threading.Thread(target=sampler, args=(
            server.proc.pid, worker_ref, inst.path / "models", stop, samples)))
        t_start = time.time()
        for t in threads:
            t.start()
        posts = 0
        while time.time() - t_start < minutes * 60:
            r = coder.post(server.url + "/v1/episodes", json=next(episodes), timeout=60)
            posts += 1
            if r.status_code >= 300:
                failures.append((time.time(), "POST /v1/episodes", f"{r.status_code} {r.text[:200]}"))
            next_at = t_start + posts * args.refit_every
            while time.time() < min(next_at, t_start + minutes * 60):
                time.sleep(0.5)
                if worker.poll() is not None:
                    raise RuntimeError(f"the refit worker exited:\n{inst.log_tail('worker')}")
        t_end = time.time()
        stop.set()
        for t in threads:
            t.join()
        history = requests.get(server.url + "/v1/refits?limit=500", timeout=60).json()["history"]
    finally:
        stop.set()
        inst.stop_all()

    jobs = [j for j in history if parse_time(j["requested_at"]) >= t_start - 1]
    windows = [(parse_time(j["started_at"]), parse_time(j["finished_at"]) or t_end)
               for j in jobs if j["started_at"]]
    during = [lat for t, _, lat in latencies if any(a <= t <= b for a, b in windows)]
    outside = [lat for t, _, lat in latencies if not any(a <= t <= b for a, b in windows)]
    by_kind = collections.defaultdict(list)
    for _, kind, lat in latencies:
        by_kind[kind].append(lat)
    outcomes = collections.Counter(j["status"] for j in jobs)
    refit_s = [j["duration_s"] for j in jobs if j["duration_s"] and j["status"] == "succeeded"]
    refit_share = sum(b - a for a, b in windows) / (t_end - t_start)

    check(rows, "duration (min)", f"{(t_end - t_start) / 60:.1f}", True)
    check(rows, "read requests", len(latencies) + sum(1 for f in failures if "POST" not in f[1]),
          True)
    check(rows, "failed requests", len(failures), not failures, "0")
    check(rows, "p50 / p99 latency outside refits (ms)",
          f"{percentile_ms(outside, 50):.0f} / {percentile_ms(outside, 99):.0f} "
          f"({len(outside)} requests)", True)
    check(rows, "p50 / p99 latency during refits (ms)",
          f"{percentile_ms(during, 50):.0f} / {percentile_ms(during, 99):.0f} "
          f"({len(during)} requests)", True)
    for kind, lats in sorted(by_kind.items()):
        check(rows, f"  {kind}: p50 / p99 (ms)",
              f"{percentile_ms(lats, 50):.0f} / {percentile_ms(lats, 99):.0f} ({len(lats)})", True)
    check(rows, "refits (outcome: count)", dict(outcomes), not outcomes.get("error"),
          "no error")
    check(rows, "refit duration median / max (s)",
          f"{np.median(refit_s):.0f} / {max(refit_s):.0f}" if refit_s else "none", True)
    check(rows, "share of the time a refit ran", f"{refit_share:.0%}", True)
    if samples:  # kept for plotting: one row per 5 s
        with open(inst.path / "soak_samples.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(samples[0]))
            writer.writeheader()
            writer.writerows(samples)
    if len(samples) >= 4:
        ts = [s["t"] - samples[0]["t"] for s in samples]
        half = len(samples) // 2
        for key, unit in [("server_rss", "MB"), ("worker_rss", "MB"), ("server_fds", ""),
                          ("worker_fds", ""), ("registry_mb", "MB")]:
            values = [s[key] for s in samples]
            slope = slope_per_hour(ts, values)
            # the first refits load libraries and caches: the second half shows the trend
            late = slope_per_hour(ts[half:], values[half:])
            limit, ok = "informative", True
            if key.endswith("fds"):
                grown = slope * (ts[-1] / 3600)
                limit, ok = "growth over the run <= 10", grown <= 10
            check(rows, f"{key.replace('_', ' ')} first / last / max (slope per hour: all, "
                  "second half)", f"{values[0]:.0f} / {values[-1]:.0f} / {max(values):.0f} "
                  f"{unit} ({slope:+.1f}, {late:+.1f} {unit}/h)", ok, limit)
    for f in failures[:20]:
        print("failure:", time.strftime("%H:%M:%S", time.gmtime(f[0])), *f[1:])
    print_table(f"soak ({minutes:g} min, refit every {args.refit_every:g} s, {args.readers} "
                f"readers, {args.web_workers} web workers, instance {inst.path})", rows)
    return 0 if all(r[3] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
