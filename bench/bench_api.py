"""API load benchmark: forecast latency and throughput against a trivial endpoint, side by side.

    .venv/bin/python bench/bench_api.py [--instance DIR] [--seconds 10] [--clients 8]

Starts `forecast serve` (gunicorn, 2 gthread workers) on a free local port against an
instance that already has a current model (default: ./instance, as `make run` leaves it),
then drives it from separate client processes with keep-alive connections:
GET /health (trivial JSON) and GET /v1/forecasts (one cell, varying scenarios so that
not every answer is cached). Prints p50/p99 latency and requests per second of each, and
the throughput ratio forecast/trivial. With --during-refit it repeats the forecast load while
a refit runs (issue 6: p99 during a refit vs idle).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import multiprocessing as mp
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PARTNERS = ["GBR", "CAN", "AUS", "NZL", "DEU", "FRA", "ISR", "SAU", "JPN", "KOR", "UKR", "SGP"]
TYPES = ["sigint", "humint", "geoint", "sources", "methods", "cyber", "ct", "military"]
TRIGGERS = ["disclosure_incident", "policy_divergence", "legal_case", "leader_rhetoric"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def forecast_paths(seed: int):
    rng = random.Random(seed)
    while True:
        yield (f"/v1/forecasts?partner={rng.choice(PARTNERS)}&intel_type={rng.choice(TYPES)}"
               f"&trigger_type={rng.choice(TRIGGERS)}&severity={rng.randint(0, 3)}"
               f"&alignment={rng.randint(0, 3)}")


def client(port: int, kind: str, seconds: float, seed: int, queue) -> None:
    paths = forecast_paths(seed) if kind == "forecast" else itertools.repeat("/health")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, errors = [], 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        path = next(paths)
        start = time.perf_counter()
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        latencies.append(time.perf_counter() - start)
    queue.put((latencies, errors))


def load(port: int, kind: str, seconds: float, clients: int) -> dict:
    queue = mp.Queue()
    procs = [mp.Process(target=client, args=(port, kind, seconds, i, queue)) for i in range(clients)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    latencies = np.concatenate([np.asarray(r[0]) for r in results]) * 1000
    return {"kind": kind, "requests": len(latencies), "errors": sum(r[1] for r in results),
            "rps": len(latencies) / seconds, "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99))}


def wait_ready(port: int, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not become ready (is there a current model?)")


def show(r: dict) -> None:
    print(f"{r['kind']:<10} {r['requests']:>7} req  {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms"
          f"  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instance", default="instance")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--during-refit", action="store_true",
                        help="also measure forecasts while `forecast fit --no-promote` runs")
    args = parser.parse_args()
    port = free_port()
    env = dict(os.environ, FORECAST_INSTANCE=str(Path(args.instance).resolve()))
    forecast_cmd = [str(Path(sys.executable).parent / "forecast")]
    server = subprocess.Popen(forecast_cmd + ["serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        load(port, "forecast", 2, args.clients)  # warm up both workers
        trivial = load(port, "trivial", args.seconds, args.clients)
        forecast = load(port, "forecast", args.seconds, args.clients)
        show(trivial)
        show(forecast)
        print(f"throughput ratio forecast/trivial: {forecast['rps'] / trivial['rps']:.2f}")
        if args.during_refit:
            refit = subprocess.Popen(forecast_cmd + ["fit", "--no-promote"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(5)  # into compilation and sampling
            busy = load(port, "forecast", args.seconds, args.clients)
            busy["kind"] = "in refit"
            refit.wait()
            show(busy)
            print(f"p99 during a refit / idle p99: {busy['p99_ms'] / forecast['p99_ms']:.1f}x")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
