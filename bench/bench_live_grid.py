"""The live grid (GET /v1/forecasts/grid?trigger_id=) against one live forecast per cell.

    .venv/bin/python bench/bench_live_grid.py [--draws 250] [--cache PATH]

A real fit (4 chains x --draws draws) of 800 seed-like episodes, full codebook; the coded
triggers are the seed data's (data/episodes.csv): the 2017 Oval Office disclosure (48 coded
reactions of 6 partners) and the 2025 pause of intelligence to Ukraine (16, of 2). For each: the
live grid computed once (`conditioned_grid_stats`, no cache) and every cell's live forecast
(`conditioned`) one by one, timed in full, their numbers checked equal. `--cache PATH` keeps
the fit's posterior in a netCDF file and reuses it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import xarray as xr

from forecasting.domain.codebook import load_codebook
from forecasting.serving.forecasts import CodedTrigger, ForecastEngine, Scenario
from forecasting.settings import DEFAULT_DATA_DIR

TRIGGERS = ("2017-oval-office-disclosure", "2025-us-ukraine-intel-pause")


def engine(codebook, draws: int, cache: Path | None) -> ForecastEngine:
    if cache is not None and cache.exists():
        tree = xr.open_datatree(cache).load()
        meta = dict(tree.attrs)
    else:
        from bench_forecasts import real_fit

        fit = real_fit(codebook, draws)
        tree, meta = fit.idata, {**fit.metadata()}
        if cache is not None:
            tree.to_netcdf(cache)
    meta = {**meta, "version": "bench", "fitted_at": "2026-12-01T00:00:00+00:00"}
    return ForecastEngine(tree, meta, codebook, cache=False)


def seed_trigger(trigger_id: str) -> CodedTrigger:
    rows = pd.read_csv(DEFAULT_DATA_DIR / "episodes.csv")
    rows = rows[rows["trigger_id"] == trigger_id]
    first = rows.iloc[0]
    return CodedTrigger(trigger_id, Scenario(first["trigger_type"], int(first["severity"]),
                                             int(first["alignment"])),
                        tuple({"partner": r.partner, "intel_type": r.intel_type,
                               "level": int(r.level)} for r in rows.itertuples()))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=250)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    codebook = load_codebook(DEFAULT_DATA_DIR / "codebook.toml")
    eng = engine(codebook, args.draws, args.cache)
    cells = [(p, t) for p in eng.partners for t in eng.intel_types]
    print(f"posterior: {eng.n_draws} draws (live answers use at most 500); {len(cells)} cells")
    for trigger_id in TRIGGERS:
        trigger = seed_trigger(trigger_id)
        partners = len({e["partner"] for e in trigger.episodes})
        start = time.perf_counter()
        grid = eng.conditioned_grid(trigger, sort="partner")
        grid_s = time.perf_counter() - start
        start = time.perf_counter()
        one = {(p, t): eng.conditioned(p, t, trigger) for p, t in cells}
        cells_s = time.perf_counter() - start
        same = all(f["any_restriction"] == one[(f["partner"], f["intel_type"])]["any_restriction"]
                   and f["levels"] == one[(f["partner"], f["intel_type"])]["levels"]
                   for f in grid["forecasts"])
        print(f"{trigger_id} ({len(trigger.episodes)} coded reactions, {partners} partners): "
              f"live grid {grid_s:.2f} s; {len(cells)} live forecasts one by one "
              f"{cells_s:.2f} s ({cells_s / len(cells):.3f} s each); "
              f"x{cells_s / grid_s:.1f}; numbers equal: {same}")


if __name__ == "__main__":
    main()
