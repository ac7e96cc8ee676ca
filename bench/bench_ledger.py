"""Ledger costs by size: the import hook when nothing is owed, scoring, and `verify`.

    .venv/bin/python bench/bench_ledger.py [--sizes 1000 10000]

Builds a ledger of synthetic forecast entries (100 cells per trigger) in a temporary SQLite
database, then times `resolve` with nothing owed (what every episode import pays), `resolve`
scoring 100 newly coded outcomes, and `verify` (the whole chain recomputed).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from forecasting.domain.codebook import load_codebook
from forecasting.domain.episodes import validate_episodes
from forecasting.services import ledger
from forecasting.settings import DEFAULT_DATA_DIR
from forecasting.store import connect
from forecasting.store.ledger import LedgerStore

PROBS = {name: [0.7, 0.2, 0.05, 0.05] for name in
         ("model", "climatology", "partner", "intel_type", "no_pooling")}
STATS = {"mean": 0.25, "median": 0.25, "ci50": [0.2, 0.3], "ci90": [0.1, 0.4]}
FORECAST = {"levels": {str(k): STATS for k in range(4)}, "any_restriction": STATS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    codebook = load_codebook(DEFAULT_DATA_DIR / "codebook.toml")
    partners, types = codebook.partner_codes, codebook.intel_type_codes
    cells = [(p, t) for p in partners for t in types][:100]
    database = connect(f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.sqlite3'}", migrate=True)
    store, made = LedgerStore(database.engine), 0
    for size in sorted(args.sizes):
        with store.appending() as appender:
            while made < size:
                partner, intel_type = cells[made % len(cells)]
                appender.append("forecast", f"t{made // len(cells)}", "bench",
                                {"probs": PROBS, "forecast": FORECAST, "reason": "registered"},
                                partner=partner, intel_type=intel_type, model_version="v1")
                made += 1
        t0 = time.perf_counter()
        ledger.resolve(database)
        idle = time.perf_counter() - t0
        trigger = f"t{(size - 1) // len(cells)}"
        rows = [{"trigger_id": trigger, "trigger_type": "disclosure_incident",
                 "trigger_date": "2026-11-30", "severity": 2, "alignment": 1, "partner": p,
                 "intel_type": t, "level": 1, "sources": "bench", "coder": "bench",
                 "confidence": "medium", "coded_at": "2026-11-30"} for p, t in cells]
        database.episodes.import_episodes(validate_episodes(list(enumerate(rows, 2)), codebook),
                                          actor="bench", codebook_version=codebook.version)
        t0 = time.perf_counter()
        scored = ledger.resolve(database)
        scoring = time.perf_counter() - t0
        t0 = time.perf_counter()
        check = ledger.verify(database)
        verifying = time.perf_counter() - t0
        print(f"{store.count():>6} entries: resolve with nothing owed {idle:.3f} s; scoring "
              f"{len(scored)} outcomes {scoring:.3f} s; verify {verifying:.3f} s "
              f"(intact: {check.intact})")
    database.dispose()


if __name__ == "__main__":
    main()
