"""Kill test: the refit worker SIGKILLed mid-fit, again and again, then left to finish.

    .venv/bin/python bench/reliability/kill_worker.py [--kills 20] [--quick] [--instance DIR]

Runs `forecast serve` and `forecast worker` (the real huey consumer) on a temporary instance
with small sampler settings (2 chains x 300 draws after 300 tuning steps, FORECAST_* below)
and FORECAST_REFIT_STALE_AFTER=4. One calibration refit measures how long a fit takes and when
its sampling runs. Then, per kill: new episodes are posted over HTTP (a refit is queued), the
script waits until a refit is running, waits a random moment (every other kill inside the
measured sampling window, the others anywhere in the fit, so that saves are hit too), SIGKILLs
the worker's process group, posts more episodes while the worker is dead, waits for its
heartbeat to go stale and starts it again (its start-up sweep queues the orphaned job again).
After the last kill the worker runs until no refit is queued or running.

Fails (exit 1) unless: every version folder in the registry is complete (metadata and a
posterior matching its checksum) and no half-written one is listed or served; every episode
posted (answered 2xx) is stored; every refit job ended (none `error`, none left queued or
running) and the current model has fitted every stored episode; no request answered 5xx.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Instance, check, new_episodes, print_table, provenance  # noqa: E402

FINAL = {"succeeded", "failed", "skipped", "error"}


class Client:
    """The HTTP calls of the test, counting server errors."""

    def __init__(self, url: str, token: str):
        self.url, self.session = url, requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.server_errors: list[str] = []
        self.posted: set[tuple[str, str, str]] = set()

    def get(self, path: str) -> requests.Response:
        r = self.session.get(self.url + path, timeout=60)
        if r.status_code >= 500:
            self.server_errors.append(f"GET {path}: {r.status_code} {r.text[:200]}")
        return r

    def post_episodes(self, rows: list[dict]) -> None:
        r = self.session.post(self.url + "/v1/episodes", json={"episodes": rows}, timeout=120)
        if r.status_code >= 500:
            self.server_errors.append(f"POST /v1/episodes: {r.status_code} {r.text[:200]}")
        r.raise_for_status()
        self.posted.update((e["trigger_id"], e["partner"], e["intel_type"]) for e in rows)

    def refits(self) -> dict:
        return self.get("/v1/refits?limit=500").json()


def wait_worker_ready(inst: Instance, proc, log_name: str, since: int,
                      timeout: float = 600) -> float:
    t0, path = time.monotonic(), inst.path / f"{log_name}.log"
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode}:\n"
                               f"{inst.log_tail(log_name)}")
        if path.exists() and "waiting for refits" in path.read_bytes()[since:].decode(errors="replace"):
            return time.monotonic() - t0
        time.sleep(0.5)
    raise RuntimeError(f"the worker did not start in {timeout} s:\n{inst.log_tail(log_name)}")


def start_worker(inst: Instance):
    inst.forecast("init")  # migrations may have landed in the working tree meanwhile
    path = inst.path / "worker.log"
    since = path.stat().st_size if path.exists() else 0
    t0 = time.monotonic()
    proc = inst.start("worker", log_name="worker")
    wait_worker_ready(inst, proc, "worker", since)
    return proc, time.monotonic() - t0


def wait_running(client: Client, timeout: float = 300) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        running = client.refits()["running"]
        if running:
            return running[0]
        time.sleep(0.1)
    raise RuntimeError(f"no refit started running within {timeout} s")


def wait_settled(client: Client, timeout: float) -> dict:
    """Until nothing is queued or running; the last status."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = client.refits()
        if not status["queued"] and not status["running"]:
            return status
        time.sleep(1)
    raise RuntimeError(f"refits still queued or running after {timeout} s: {client.refits()}")


def registry_check(root: Path) -> tuple[list[str], list[str], list[str]]:
    """(complete versions, incomplete or corrupt version folders, leftover temporary entries)."""
    complete, broken, leftovers = [], [], []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".tmp-"):
            leftovers.append(entry.name)
            continue
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        meta_path, posterior = entry / "metadata.json", entry / "posterior.nc"
        try:
            meta = json.loads(meta_path.read_text())
            digest = hashlib.sha256(posterior.read_bytes()).hexdigest()
        except (OSError, ValueError) as exc:
            broken.append(f"{entry.name}: {type(exc).__name__}")
            continue
        if meta.get("version") != entry.name or meta.get("posterior_sha256") not in (None, digest):
            broken.append(f"{entry.name}: metadata does not match the folder or the posterior")
        else:
            complete.append(entry.name)
    return complete, broken, leftovers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", help="instance folder (default: a new temporary one)")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 kills (development)")
    parser.add_argument("--episodes-per-post", type=int, default=8)
    parser.add_argument("--draws", default="300")
    parser.add_argument("--tune", default="300")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    kills = 3 if args.quick else args.kills
    rng = random.Random(args.seed)
    stale_after = 4.0

    inst = Instance.create(args.instance, {
        "FORECAST_DRAWS": args.draws, "FORECAST_TUNE": args.tune,
        "FORECAST_REFIT_STALE_AFTER": str(stale_after), "FORECAST_REFIT_DELAY": "0"},
        prefix="reliability-kill-")
    print(f"instance {inst.path}; {provenance()}", flush=True)
    pool = iter(new_episodes(args.episodes_per_post * (2 * kills + 2), "kill", seed=args.seed))

    def batch():
        return [next(pool) for _ in range(args.episodes_per_post)]

    t_start = time.monotonic()
    rows, records = [], []
    try:
        inst.prepare(fit=True)
        server = inst.serve(workers=2)
        client = Client(server.url, inst.tokens["coder"])
        worker, ready_s = start_worker(inst)
        print(f"worker ready in {ready_s:.0f} s; calibration refit ...", flush=True)

        # calibration: one refit left alone, to learn when sampling runs
        client.post_episodes(batch())
        job = wait_running(client)
        seen = time.monotonic()
        status = wait_settled(client, 600)
        fit_s = time.monotonic() - seen
        calib = next(j for j in status["history"] if j["id"] == job["id"])
        timings = calib["detail"].get("timings") or {}
        before = timings.get("build", 0) + timings.get("compile", 0)
        window = (before, before + timings.get("sampling", 0))
        print(f"calibration: job {calib['id']} {calib['status']} in {fit_s:.1f} s (sampling "
              f"{window[0]:.1f}-{window[1]:.1f} s into the fit)", flush=True)

        restart_s = [ready_s]
        for k in range(kills):
            client.post_episodes(batch())
            job = wait_running(client)
            seen = time.monotonic()
            target = "sampling" if k % 2 == 0 else "anywhere"
            delay = (rng.uniform(*window) if target == "sampling"
                     else rng.uniform(0, fit_s))
            time.sleep(max(0.0, delay - (time.monotonic() - seen)))
            running = client.refits()["running"]
            at = time.monotonic() - seen
            inst.stop(worker, sig=signal.SIGKILL)
            mid_fit = bool(running) and running[0]["id"] == job["id"]
            records.append((k + 1, job["id"], target, f"{at:.1f}", "yes" if mid_fit else "no"))
            print(f"kill {k + 1}/{kills}: job {job['id']} at {at:.1f} s ({target}; "
                  f"{'mid-fit' if mid_fit else 'fit already over'})", flush=True)
            client.post_episodes(batch())  # while no worker runs
            time.sleep(stale_after + 1)  # the start-up sweep takes the job for orphaned
            worker, ready_s = start_worker(inst)
            restart_s.append(ready_s)

        print("last kill done; letting the worker finish ...", flush=True)
        settle_t0 = time.monotonic()
        status = wait_settled(client, 900)
        settle_s = time.monotonic() - settle_t0
        # the sweeper is the only way back for a job whose delivery was lost: give it time too
        history = client.refits()["history"]
        stored = {(e["trigger_id"], e["partner"], e["intel_type"])
                  for e in _all_episodes(client, "kill-")}
        complete, broken, leftovers = registry_check(inst.path / "models")
        listed = [m["version"] for m in client.get("/v1/models").json()["models"]]
        served_ok = [v for v in listed if client.get(f"/v1/models/{v}").status_code == 200]
        current = client.get("/v1/models/current").json()
        total_episodes = client.get("/v1/episodes?limit=1").json()["total"]

        check(rows, "kills", kills, True)
        check(rows, "kills while the job was running", sum(r[4] == "yes" for r in records),
              True, "informative")
        check(rows, "  of which aimed inside the sampling window",
              sum(r[4] == "yes" and r[2] == "sampling" for r in records), True, "informative")
        check(rows, "partial version folders on disk", len(broken), not broken, "0")
        check(rows, "versions listed but not complete on disk",
              len(set(listed) - set(complete)), set(listed) <= set(complete), "0")
        check(rows, "listed versions answering 200", f"{len(served_ok)} of {len(listed)}",
              len(served_ok) == len(listed), "all")
        check(rows, "leftover temporary entries (never listed)", len(leftovers), True,
              "informative")
        lost = inst_lost = len(client.posted - stored)
        check(rows, "episodes posted", len(client.posted), True)
        check(rows, "episodes lost", inst_lost, lost == 0, "0")
        errors = [j for j in history if j["status"] == "error"]
        unfinished = [j for j in history if j["status"] not in FINAL]
        check(rows, "refit jobs", len(history), True)
        check(rows, "jobs ended in error", len(errors), not errors, "0")
        check(rows, "jobs left queued or running", len(unfinished), not unfinished, "0")
        check(rows, "current model stale after the run", status["stale"], not status["stale"],
              "False")
        check(rows, "episodes fitted by the current model",
              f"{current.get('episodes')} of {total_episodes}",
              current.get("episodes") == total_episodes, "all")
        check(rows, "server errors (5xx)", len(client.server_errors),
              not client.server_errors, "0")
        check(rows, "calibration fit (s)", f"{fit_s:.1f}", True)
        check(rows, "worker restart to ready (s, median)",
              f"{sorted(restart_s)[len(restart_s) // 2]:.0f}", True)
        check(rows, "settling after the last restart (s)", f"{settle_s:.0f}", True)
        check(rows, "wall time (min)", f"{(time.monotonic() - t_start) / 60:.1f}", True)
        print_table("kills", records, ("kill", "job", "aimed at", "seconds into fit", "mid-fit"))
        print_table("jobs", [(j["id"], j["status"], j["attempts"], j["reason"],
                              j["version"] or "", j["promoted"],
                              str(j["detail"].get("error") or j["detail"].get("note") or "")[:100])
                             for j in reversed(history)],
                    ("job", "status", "attempts", "reason", "version", "promoted", "detail"))
        for e in client.server_errors[:20]:
            print("server error:", e)
    finally:
        inst.stop_all()
    print_table(f"kill test ({kills} kills, instance {inst.path})", rows)
    return 0 if all(r[3] == "yes" for r in rows) else 1


def _all_episodes(client: Client, prefix: str) -> list[dict]:
    found, offset = [], 0
    while True:
        page = client.get(f"/v1/episodes?limit=1000&offset={offset}").json()
        found += [e for e in page["episodes"] if e["trigger_id"].startswith(prefix)]
        offset += page["limit"]
        if offset >= page["total"]:
            return found


if __name__ == "__main__":
    sys.exit(main())
