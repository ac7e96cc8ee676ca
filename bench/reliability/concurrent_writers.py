"""Concurrent writers: many clients posting the same episodes at once to a real server.

    .venv/bin/python bench/reliability/concurrent_writers.py [--backend sqlite|postgres|both]
        [--episodes 10000] [--clients 16] [--batch 250] [--web-workers 4] [--quick]

Starts `forecast serve` (gunicorn, --web-workers processes of 4 threads) on a temporary
instance, on SQLite and then on PostgreSQL (a fresh schema `reliability_writers` in the
database of FORECAST_TEST_POSTGRES_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/test;
skipped, saying why, when no server answers). Valid episodes on new triggers are built from
the seed data's triggers and the codebook's partners and types.

Phase 1, batches: the episodes are cut into windows of --batch rows with a stride of half a
window (every episode is in two windows), each window is posted by two different clients, and
all --clients clients walk their windows in the same order from a common start, so the same
rows arrive from up to four requests at once. Phase 2, hot keys: all clients post the same
single episode at the same moment (a barrier per round), then PUT it with different levels.

Fails (exit 1) unless each episode is stored exactly once (one row per key, one revision per
row from phase 1, the answers' `inserted` adding up to the number of distinct episodes) and no
request answers 5xx (other refusals are listed and fail too: every request is valid).
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import threading
import time
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Instance,
    check,
    new_episodes,
    percentile_ms,
    postgres_reason,
    postgres_schema_url,
    print_table,
    provenance,
)


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses: collections.Counter = collections.Counter()
        self.failures: list[str] = []
        self.latencies: list[float] = []
        self.inserted = self.revised = self.unchanged = 0

    def record(self, method: str, path: str, r: requests.Response | Exception, seconds: float):
        with self.lock:
            if isinstance(r, Exception):
                self.statuses["exception"] += 1
                self.failures.append(f"{method} {path}: {type(r).__name__}: {r}")
                return
            self.statuses[r.status_code] += 1
            self.latencies.append(seconds)
            if r.status_code >= 300:
                self.failures.append(f"{method} {path}: {r.status_code} {r.text[:300]}")
            elif method == "POST":
                body = r.json()
                self.inserted += body.get("inserted", 0)
                self.revised += body.get("revised", 0)
                self.unchanged += body.get("unchanged", 0)


def call(session, tally, method, url, path, body):
    t0 = time.perf_counter()
    try:
        r = session.request(method, url + path, json=body, timeout=300)
    except requests.RequestException as exc:
        tally.record(method, path, exc, 0)
        return
    tally.record(method, path, r, time.perf_counter() - t0)


def batch_phase(url: str, token: str, episodes: list[dict], clients: int, batch: int,
                seed: int) -> tuple[Tally, float]:
    rng = random.Random(seed)
    stride = max(1, batch // 2)
    windows = [episodes[i:i + batch] for i in range(0, len(episodes) - stride, stride)] or [episodes]
    plan = collections.defaultdict(list)  # client -> window indices, in one common order
    for w in range(len(windows)):
        for c in rng.sample(range(clients), min(2, clients)):
            plan[c].append(w)
    tally, barrier = Tally(), threading.Barrier(clients)

    def client(c):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        barrier.wait()
        for w in plan[c]:
            call(session, tally, "POST", url, "/v1/episodes", {"episodes": windows[w]})

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.perf_counter() - t0


def hot_key_phase(url: str, token: str, episodes: list[dict], clients: int) -> Tally:
    tally, barrier = Tally(), threading.Barrier(clients)

    def client(c):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        for e in episodes:
            key = f"/v1/episodes/{e['trigger_id']}/{e['partner']}/{e['intel_type']}"
            barrier.wait()
            call(session, tally, "POST", url, "/v1/episodes", e)
            barrier.wait()
            call(session, tally, "PUT", url, key, {**e, "level": c % 4})

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally


def stored(database_url: str, prefix: str) -> dict:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT trigger_id, partner, intel_type, COUNT(*) FROM episodes "
            "WHERE trigger_id LIKE :p GROUP BY trigger_id, partner, intel_type"),
            {"p": prefix + "%"}).all()
        revisions = conn.execute(text(
            "SELECT e.trigger_id, COUNT(r.id) FROM episodes e JOIN episode_revisions r "
            "ON r.episode_id = e.id WHERE e.trigger_id LIKE :p GROUP BY e.id, e.trigger_id"),
            {"p": prefix + "%"}).all()
    engine.dispose()
    return {"keys": {(a, b, c) for a, b, c, _ in rows}, "duplicates": sum(n > 1 for *_, n in rows),
            "revisions": collections.Counter(n for _, n in revisions)}


def run_backend(name: str, args, rows: list[tuple]) -> None:
    extra = {"FORECAST_REFIT_DELAY": "3600"}  # no worker runs: refit requests just queue
    if name == "postgres":
        extra["FORECAST_DATABASE_URL"] = postgres_schema_url("reliability_writers")
    inst = Instance.create(args.instance and f"{args.instance}-{name}", extra,
                           prefix=f"reliability-writers-{name}-")
    database_url = inst.env.get("FORECAST_DATABASE_URL") or \
        f"sqlite:///{inst.path / 'forecasting.sqlite3'}"
    episodes = new_episodes(args.episodes, "cw", seed=args.seed)
    hot = new_episodes(args.hot_keys, "cwhot", seed=args.seed + 1)
    try:
        inst.prepare(seed=True)
        server = inst.serve(workers=args.web_workers)
        token = inst.tokens["coder"]
        tally, seconds = batch_phase(server.url, token, episodes, args.clients, args.batch,
                                     args.seed)
        hot_tally = hot_key_phase(server.url, token, hot, args.clients)
    finally:
        inst.stop_all()
    found, found_hot = stored(database_url, "cw-"), stored(database_url, "cwhot-")
    expected = {(e["trigger_id"], e["partner"], e["intel_type"]) for e in episodes}
    requests_made = sum(tally.statuses.values())
    server_errors = sum(n for s, n in tally.statuses.items() if s == "exception" or s >= 500)
    hot_errors = sum(n for s, n in hot_tally.statuses.items() if s == "exception" or s >= 500)
    label = f"{name}: "
    check(rows, label + "batch requests (status: count)",
          f"{requests_made} ({dict(sorted(tally.statuses.items(), key=str))})", True)
    check(rows, label + "episodes posted (distinct)", len(expected), True)
    check(rows, label + "episodes stored", len(found["keys"]), found["keys"] == expected,
          str(len(expected)))
    check(rows, label + "keys stored more than once", found["duplicates"],
          found["duplicates"] == 0, "0")
    check(rows, label + "revisions per stored episode", dict(found["revisions"]),
          set(found["revisions"]) == {1}, "{1: all}")
    check(rows, label + "inserted / revised / unchanged in the answers",
          f"{tally.inserted} / {tally.revised} / {tally.unchanged}",
          tally.inserted == len(expected) and tally.revised == 0, f"{len(expected)} / 0 / rest")
    check(rows, label + "server errors (5xx or no answer)", server_errors, server_errors == 0, "0")
    check(rows, label + "other refusals", len(tally.failures) - server_errors,
          len(tally.failures) == server_errors, "0")
    check(rows, label + "episodes per second", f"{len(episodes) * 2 * 2 / seconds:.0f} posted "
          f"({len(expected) / seconds:.0f} distinct)", True)
    check(rows, label + "batch latency p50 / p99 (ms)",
          f"{percentile_ms(tally.latencies, 50):.0f} / {percentile_ms(tally.latencies, 99):.0f}",
          True)
    check(rows, label + "hot keys: requests (status: count)",
          f"{sum(hot_tally.statuses.values())} ({dict(sorted(hot_tally.statuses.items(), key=str))})",
          True)
    check(rows, label + "hot keys stored once", f"{len(found_hot['keys'])} of {len(hot)}",
          len(found_hot["keys"]) == len(hot) and found_hot["duplicates"] == 0, str(len(hot)))
    check(rows, label + "hot keys: server errors", hot_errors, hot_errors == 0, "0")
    check(rows, label + "hot keys: other refusals", len(hot_tally.failures) - hot_errors,
          len(hot_tally.failures) == hot_errors, "0")
    for failure in (tally.failures + hot_tally.failures)[:15]:
        print(f"{name}: {failure}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", help="instance folder prefix (default: new temporary ones)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--hot-keys", type=int, default=20)
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="1,000 episodes, 5 hot keys")
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.hot_keys = 1000, 5
    rows: list[tuple] = []
    skipped = []
    print(provenance(), flush=True)
    for name in (["sqlite", "postgres"] if args.backend == "both" else [args.backend]):
        if name == "postgres" and (reason := postgres_reason()):
            skipped.append(f"postgres skipped: {reason}")
            continue
        t0 = time.monotonic()
        run_backend(name, args, rows)
        print(f"{name} done in {time.monotonic() - t0:.0f} s", flush=True)
    print_table(f"concurrent writers ({args.clients} clients, {args.episodes} episodes, batches "
                f"of {args.batch}, {args.web_workers} web workers)", rows)
    for s in skipped:
        print(s)
    return 0 if all(r[3] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
