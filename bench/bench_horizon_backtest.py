"""The horizon forecasts backtested end to end, and the exposure by trigger type against one
exposure per partner (forecasting.evaluation.trigger_backtest; figures in docs/horizons.md).

    .venv/bin/python bench/bench_horizon_backtest.py [--draws 400] [--chains 4] [--json PATH]

On the seed data (data/episodes.csv): at every origin (every 12 months from the day after the
15th coded trigger, while H months fit in the coded window) the restriction model is refitted
on the episodes before it (nutpie, --chains x --draws after as many tuning steps, the
restriction backtest's settings by default) and the arrival model with the served settings;
every partner x type cell's P(at least one restriction within 6 and 12 months) is scored
against what was coded after the origin, beside a climatology. Prints the summaries as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import pandas as pd

from forecasting.domain.codebook import load_codebook
from forecasting.evaluation.backtest import BACKTEST_SAMPLER
from forecasting.evaluation.trigger_backtest import (
    run_exposure_backtest,
    run_horizon_backtest,
    summarise_exposure_backtest,
    summarise_horizon_backtest,
)
from forecasting.model.priors import load_priors
from forecasting.settings import DEFAULT_DATA_DIR, DEFAULT_PRIORS_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=BACKTEST_SAMPLER.draws)
    parser.add_argument("--chains", type=int, default=BACKTEST_SAMPLER.chains)
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    args = parser.parse_args()
    codebook = load_codebook(DEFAULT_DATA_DIR / "codebook.toml")
    episodes = pd.read_csv(DEFAULT_DATA_DIR / "episodes.csv")
    report = {}
    t0 = time.perf_counter()
    report["exposure"] = summarise_exposure_backtest(run_exposure_backtest(episodes, codebook))
    report["exposure"]["seconds"] = round(time.perf_counter() - t0, 1)
    sampler = dataclasses.replace(BACKTEST_SAMPLER, draws=args.draws, tune=args.draws,
                                  chains=args.chains)
    t0 = time.perf_counter()
    table = run_horizon_backtest(episodes, codebook,
                                 load_priors(DEFAULT_PRIORS_DIR / "default.toml"),
                                 sampler=sampler)
    report["end_to_end"] = summarise_horizon_backtest(table)
    report["end_to_end"]["seconds"] = round(time.perf_counter() - t0, 1)
    report["end_to_end"]["sampler"] = dataclasses.asdict(sampler)
    if args.json is not None:
        args.json.write_text(table.to_json(orient="records", indent=1))
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
