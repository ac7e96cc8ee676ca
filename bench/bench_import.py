"""Bulk import benchmark: N simulated episodes from a CSV file into a fresh embedded database.

    .venv/bin/python bench/bench_import.py [--rows 100000] [--postgres URL]

Prints the time to validate and write the whole file (first import), and to re-import
the same file (every row unchanged: the idempotent path), with peak memory.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from forecasting.domain.codebook import load_codebook
from forecasting.evaluation.simulate import simulate_episodes
from forecasting.services.setup import import_file
from forecasting.settings import DEFAULT_DATA_DIR
from forecasting.store import connect


def timed(label, fn):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    return result, seconds


def run(url: str, path: Path, codebook, label: str) -> None:
    database = connect(url, migrate=True)
    first, t_first = timed("import", lambda: import_file(database, codebook, path, actor="bench"))
    again, t_again = timed("re-import", lambda: import_file(database, codebook, path, actor="bench"))
    rows = first.inserted
    print(f"{label:<10} first import  {rows:>7} rows  {t_first:6.1f} s  "
          f"{rows / t_first:8.0f} rows/s")
    print(f"{label:<10} re-import     {again.unchanged:>7} rows  {t_again:6.1f} s  "
          f"(all unchanged: {again.unchanged == rows})")
    database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", help="also run against this PostgreSQL URL (tables reset)")
    args = parser.parse_args()
    codebook = load_codebook(DEFAULT_DATA_DIR / "codebook.toml")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (frame, _), t_sim = timed("simulate", lambda: simulate_episodes(codebook, args.rows, seed=1))
        path = tmp / "episodes.csv"
        frame.to_csv(path, index=False)
        print(f"simulated {len(frame)} rows in {t_sim:.1f} s ({path.stat().st_size / 1e6:.1f} MB CSV)")
        run(f"sqlite:///{tmp / 'bench.sqlite3'}", path, codebook, "sqlite")
        if args.postgres:
            from sqlalchemy import create_engine, text

            from forecasting.store.schema import metadata

            engine = create_engine(args.postgres)
            with engine.begin() as conn:
                metadata.drop_all(conn)
                conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
            engine.dispose()
            run(args.postgres, path, codebook, "postgres")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
