"""Prior check benchmark: CPU and wall time per call of the prior predictive of a new prior set.

    .venv/bin/python bench/bench_prior_check.py [--calls 3] [--draws 1000] [--no-pymc]

Each call checks a different prior set (sigma_pt changed), as distinct `POST /v1/priors/check`
bodies do. "numpy" is the check as served (forecasting.model.prior_predictive.prior_predictive:
numpy draws). "pymc" is how the check drew before issue 15 and how a fit's stored prior group
still draws: build the PyMC model for these priors, `sample_prior` (one graph compiled per
prior set, the cutpoints' ordered draws another), then the same outcome summary. The numpy
path runs first, in a process that has not imported PyMC, and the import of PyMC is timed
on its own.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from forecasting.domain.cells import empty_cells
from forecasting.domain.codebook import load_codebook
from forecasting.model.prior_predictive import outcome_samples, prior_predictive
from forecasting.model.priors import load_priors
from forecasting.settings import DEFAULT_DATA_DIR, DEFAULT_PRIORS_DIR


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def report(label: str, times: list[tuple[float, float]]) -> None:
    walls, cpus = [w for w, _ in times], [c for _, c in times]
    print(f"{label:<8} {len(times)} calls  wall per call {min(walls):6.2f}-{max(walls):6.2f} s"
          f"  CPU per call {min(cpus):6.2f}-{max(cpus):6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--no-pymc", action="store_true", help="time the numpy check only")
    parser.add_argument("--seed", type=int, default=None,
                        help="of the prior sets' scales (default: fresh ones every run)")
    args = parser.parse_args()
    codebook = load_codebook(DEFAULT_DATA_DIR / "codebook.toml")
    base = load_priors(DEFAULT_PRIORS_DIR / "default.toml")
    # prior sets never checked before (PyTensor caches a compiled graph by its constants, so
    # a set seen by an earlier run would time a cache hit, not a distinct body)
    rng = np.random.default_rng(args.seed)
    sets = [base.replace(sigma_pt={"dist": "HalfNormal",
                                   "kwargs": {"sigma": float(rng.uniform(0.2, 0.5))}})
            for _ in range(args.calls)]
    print(f"{args.draws} draws, the vocabulary's scenarios, {args.calls} distinct prior sets")

    numpy_times = []
    for priors in sets:
        _, wall, cpu = timed(lambda p=priors: prior_predictive(codebook, p, draws=args.draws))
        numpy_times.append((wall, cpu))
    report("numpy", numpy_times)
    print(f"PyMC imported by the numpy check: {'pymc' in sys.modules}")
    if args.no_pymc:
        return

    _, wall, cpu = timed(lambda: __import__("pymc"))
    print(f"import pymc: wall {wall:.2f} s, CPU {cpu:.2f} s (paid once per process)")
    from forecasting.model.prior_predictive import sample_prior
    from forecasting.model.pymc_model import build_model

    cells = empty_cells(codebook)
    pymc_times = []
    for priors in sets:
        def before(p=priors):
            prior = sample_prior(build_model(cells, p), args.draws, seed=0)
            return outcome_samples(prior, cells, 1)

        _, wall, cpu = timed(before)
        pymc_times.append((wall, cpu))
    report("pymc", pymc_times)


if __name__ == "__main__":
    main()
