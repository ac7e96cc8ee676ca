"""End to end: from new coded episodes accepted by the API to their effect being served.

    .venv/bin/python bench/bench_refit.py [--instance DIR] [--episodes 20] [--delay 5]
    .venv/bin/python bench/bench_refit.py --in-process 3   # the seed refit's steps, in-process
    .venv/bin/python bench/bench_refit.py --in-process 4 --baseline-diagnostics a92929d

Copies the instance (which must have a current model, as `make run` leaves it) to a
temporary folder, starts `forecast serve` and `forecast worker` on it with the given settling
delay, posts a batch of new episodes with a coder token, then polls a forecast until its
model version changes. Prints the time to the new version, the refit's own duration and
verdict, and forecast latency p50/p99 while idle and while the refit runs, side by side.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import free_port, wait_ready  # noqa: E402

QUERY = "/v1/forecasts?partner=ISR&intel_type=humint&severity=3"


def get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"null")


def post(port, path, body, token):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=json.dumps(body),
                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def latencies(port, stop: threading.Event, out: list):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        start = time.perf_counter()
        conn.request("GET", QUERY)
        conn.getresponse().read()
        out.append((time.perf_counter() - start) * 1000)
        time.sleep(0.01)


def new_episodes(n: int) -> list[dict]:
    types = ["sigint", "humint", "geoint", "sources", "methods", "cyber", "ct", "military"]
    partners = ["ISR", "GBR", "CAN", "AUS", "DEU", "FRA", "NLD", "JPN"]
    return [{"trigger_id": "bench-2026-disclosure", "trigger_type": "disclosure_incident",
             "trigger_date": "2026-11-01", "severity": 3, "alignment": 2,
             "partner": partners[i // len(types) % len(partners)], "intel_type": types[i % len(types)],
             "level": 2 if i % 3 == 0 else 0, "sources": "Benchmark source, 2026-11-01",
             "coder": "bench", "confidence": "medium"} for i in range(n)]


def in_process(repeats: int, baseline: str | None = None) -> None:
    """The seed refit in one process: a first fit (compile from the on-disk cache), then
    `repeats` warm refits, each step's seconds; then the log prior by PyMC's
    compute_log_prior (what the fit ran before) and in numpy (what it runs now), alternating
    on the last fit's draws, and whether they agree. With `baseline` (a commit), the warm
    refits alternate between that commit's diagnostics and today's."""
    import pymc as pm

    import forecasting.model.fitting as fitting

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from forecasting.domain.cells import aggregate, episodes_frame
    from forecasting.domain.codebook import load_codebook
    from forecasting.domain.interchange import read_episodes
    from forecasting.model.fitting import add_log_prior, fit_and_diagnose
    from forecasting.model.priors import load_priors
    from forecasting.model.pymc_model import build_model
    from forecasting.settings import GateThresholds, SamplerSettings

    root = Path(__file__).resolve().parent.parent
    codebook = load_codebook(root / "data" / "codebook.toml")
    frame = episodes_frame(read_episodes(root / "data" / "episodes.csv", codebook))
    priors = load_priors(root / "priors" / "default.toml")
    steps = ("compile", "sampling", "log_likelihood", "log_prior", "prior_predictive",
             "posterior_predictive", "diagnostics_convergence", "diagnostics_loo",
             "diagnostics_loo_trigger", "diagnostics_ppc")
    diagnoses = {"": fitting.diagnose}
    if baseline:
        from bench_diagnostics import baseline_diagnostics

        diagnoses = {" (today's diagnostics)": fitting.diagnose,
                     f" ({baseline}'s diagnostics)": baseline_diagnostics(baseline).diagnose}
    for i in range(repeats + 1):
        which = list(diagnoses)[i % len(diagnoses)]
        fitting.diagnose = diagnoses[which]
        t0 = time.perf_counter()
        result = fit_and_diagnose(frame, codebook, priors, SamplerSettings(), GateThresholds())
        total = time.perf_counter() - t0
        parts = ", ".join(f"{k} {result.timings[k]:.2f}" for k in steps if k in result.timings)
        print(f"{'first fit' if i == 0 else 'warm refit'}{which}: {total:.2f} s, "
              f"{result.verdict.verdict} ({parts}); load average {os.getloadavg()[0]:.1f}",
              flush=True)
    tree = result.idata
    model = build_model(aggregate(frame, codebook), priors)
    for _ in range(3):
        t0 = time.perf_counter()
        theirs = pm.stats.compute_log_prior(tree, model=model, progressbar=False,
                                            extend_inferencedata=False)
        t1 = time.perf_counter()
        add_log_prior(tree, model)
        t2 = time.perf_counter()
        print(f"log prior: PyMC {t1 - t0:.2f} s, numpy {t2 - t1:.3f} s", flush=True)
    ours = tree["log_prior"].to_dataset()
    worst = max(float(np.max(np.abs(ours[k].values - theirs[k].values))) for k in theirs)
    print(f"largest difference between the two: {worst:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instance", default="instance")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--delay", type=float, default=5)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--in-process", type=int, metavar="N",
                        help="instead: a seed fit and N warm refits in this process, by step")
    parser.add_argument("--baseline-diagnostics", metavar="REV",
                        help="with --in-process: alternate the refits between this commit's "
                             "diagnostics and today's")
    args = parser.parse_args()
    if args.in_process is not None:
        in_process(args.in_process, args.baseline_diagnostics)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-refit-"))
    shutil.copytree(Path(args.instance).resolve(), work / "instance",
                    ignore=shutil.ignore_patterns("queue.sqlite3*", "plots"))
    env = dict(os.environ, FORECAST_INSTANCE=str(work / "instance"),
               FORECAST_REFIT_DELAY=str(args.delay), FORECAST_REFIT_SCHEDULE="")
    forecast = str(Path(sys.executable).parent / "forecast")
    token = subprocess.run([forecast, "token", "create", f"bench-{os.getpid()}", "--role", "coder"],
                           env=env, capture_output=True, text=True, check=True).stdout.split()[-1]
    port = free_port()
    procs = [subprocess.Popen([forecast, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([forecast, "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=(work / "worker.log").open("w"))]
    try:
        wait_ready(port)
        # a worker compiles the model before taking refits; measure a warmed-up service
        end = time.time() + 300
        while "waiting for refits" not in (work / "worker.log").read_text() and time.time() < end:
            time.sleep(0.5)
        before = get(port, QUERY)[1]["model"]["version"]
        idle, stop = [], threading.Event()
        t = threading.Thread(target=latencies, args=(port, stop, idle))
        t.start()
        time.sleep(5)
        stop.set()
        t.join()

        busy, stop = [], threading.Event()
        t = threading.Thread(target=latencies, args=(port, stop, busy))
        t.start()
        status, body = post(port, "/v1/episodes", {"episodes": new_episodes(args.episodes)}, token)
        accepted = time.perf_counter()
        assert status == 201, body
        version = before
        while version == before and time.perf_counter() - accepted < args.timeout:
            time.sleep(0.5)
            version = get(port, QUERY)[1]["model"]["version"]
        elapsed = time.perf_counter() - accepted
        stop.set()
        t.join()
        job = get(port, f"/v1/refits/{body['refit']['id']}")[1]
        model = get(port, QUERY)[1]["model"]
        print(f"episodes posted: {args.episodes}; settling delay {args.delay:g} s")
        if version == before:
            print(f"no new version within {args.timeout:g} s; refit job: {job['status']} "
                  f"{job.get('detail')}")
        else:
            print(f"accepted -> served: {elapsed:.1f} s (new version {version}, "
                  f"{model['episodes']} episodes, verdict {model['verdict']})")
            print(f"refit job {job['id']}: {job['status']}, fit {job['duration_s']:.1f} s")
        for name, values in (("idle", idle), ("during refit", busy)):
            v = np.asarray(values)
            print(f"forecast latency {name:<13} n={len(v):5d}  p50 {np.percentile(v, 50):6.2f} ms"
                  f"  p99 {np.percentile(v, 99):7.2f} ms")
        print(f"p99 during refit / idle: {np.percentile(busy, 99) / np.percentile(idle, 99):.1f}x")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
