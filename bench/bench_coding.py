"""Double coding of the seed episodes by a simulated second coder, end to end through the CLI.

    .venv/bin/python bench/bench_coding.py [--n 150] [--flip 0.15] [--seed 1]

In a temporary instance: `forecast init`, `forecast import data/episodes.csv`, `forecast
coding sample N` (stratified, coded fields blank), a simulated second coder fills the blanks
from the first coder's values with noise (each ordinal field moved one step with probability
--flip, confidence and trigger type changed with probability --flip), `forecast import` of
that file, then `forecast coding reliability --json` and `forecast coding disagreements
--json`. Prints alpha per field with its interval, the disputes, and the seconds each
command took. The second coder is simulated: the figures show the machinery, not the seed
data's real reliability.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORECAST = str(Path(sys.executable).parent / "forecast")
ORDINAL = ("level", "severity", "alignment")


def run(env, *args) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run([FORECAST, *args], env=env, check=True, capture_output=True, text=True)
    return done.stdout, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=150)
    parser.add_argument("--flip", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, FORECAST_INSTANCE=str(Path(folder) / "instance"),
                   FORECAST_REFIT_SCHEDULE="")
        run(env, "init")
        run(env, "import", str(ROOT / "data" / "episodes.csv"))
        blank = Path(folder) / "blank.csv"
        _, t_sample = run(env, "coding", "sample", str(args.n), str(blank), "--seed", "3")
        first = {(r["trigger_id"], r["partner"], r["intel_type"]): r for r in
                 csv.DictReader((ROOT / "data" / "episodes.csv").open(encoding="utf-8"))}
        rows = list(csv.DictReader(blank.open(encoding="utf-8")))
        for row in rows:
            original = first[(row["trigger_id"], row["partner"], row["intel_type"])]
            for field in ("trigger_type", "trigger_date", *ORDINAL, "confidence"):
                row[field] = original[field]
            for field in ORDINAL:
                if rng.random() < args.flip:
                    value = int(row[field])
                    row[field] = str(min(3, value + 1) if value == 0 or rng.random() < 0.5
                                     else value - 1)
            if rng.random() < args.flip:
                row["confidence"] = rng.choice(["low", "medium", "high"])
            row["coder"], row["coded_at"] = "second-coder", "2026-11-30"
        second = Path(folder) / "second.csv"
        with second.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        imported, t_import = run(env, "import", str(second))
        report, t_reliability = run(env, "coding", "reliability", "--json")
        disputes, t_disputes = run(env, "coding", "disagreements", "--json")
    report = json.loads(report)
    print(imported.strip().splitlines()[0])
    print(f"{report['episodes']} double-coded episodes; by status {report['coverage']}")
    for field, entry in report["fields"].items():
        interval = entry["ci95"]
        shown = f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "-"
        alpha = "-" if entry["alpha"] is None else f"{entry['alpha']:.3f}"
        print(f"  {field:13s} {entry['measure']:8s} alpha {alpha} {shown} {entry['reading']}, "
              f"agreement {entry['agreement']:.0%}")
    print(f"{json.loads(disputes)['total']} disagreements await adjudication")
    print(f"seconds: sample {t_sample:.1f}, import {t_import:.1f}, reliability (1,000 "
          f"resamples) {t_reliability:.1f}, disagreements {t_disputes:.1f}")


if __name__ == "__main__":
    main()
