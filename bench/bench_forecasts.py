"""Forecast engine latency on a real 4 chains x 1,000 draws fit of seed-like data, full codebook.

    .venv/bin/python bench/bench_forecasts.py [--queries 5000] [--draws 1000]

"cold" = the engine's cache turned off (every answer computed from the draws); "warm" = the
default cache, after the answers were computed once. Also times loading a version from a
registry (save + ForecastEngine.from_version), which a server pays when "current" changes.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from forecasting.domain.codebook import load_codebook
from forecasting.registry import Registry
from forecasting.serving.forecasts import ForecastEngine
from forecasting.settings import DEFAULT_DATA_DIR, DEFAULT_PRIORS_DIR, GateThresholds, SamplerSettings


def real_fit(codebook, draws: int):
    """A fit of 800 seed-like episodes with the default priors (compiling takes ~20 s)."""
    from forecasting.evaluation.simulate import seed_like
    from forecasting.model.fitting import fit_and_diagnose
    from forecasting.model.priors import load_priors

    episodes, _ = seed_like(codebook, n=800, seed=5)
    sampler = SamplerSettings(chains=4, draws=draws, tune=300, seed=1)
    return fit_and_diagnose(episodes, codebook, load_priors(DEFAULT_PRIORS_DIR / "default.toml"),
                            sampler, GateThresholds())


def timed(fn, repeat: int) -> np.ndarray:
    out = np.empty(repeat)
    for i in range(repeat):
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out * 1e3  # ms


def random_queries(codebook, n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    pick = lambda codes: str(rng.choice(list(codes)))  # noqa: E731
    return [{"partner": pick(codebook.partner_codes), "intel_type": pick(codebook.intel_type_codes),
             "trigger_type": pick(codebook.trigger_type_codes),
             "severity": int(rng.integers(0, 4)), "alignment": int(rng.integers(0, 4))}
            for _ in range(n)]


def line(label: str, ms: np.ndarray) -> str:
    return (f"{label:<34} p50 {np.percentile(ms, 50):8.3f} ms   p99 {np.percentile(ms, 99):8.3f} ms"
            f"   n={len(ms)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args(argv)

    codebook = load_codebook(DEFAULT_DATA_DIR / "codebook.toml")
    fit = real_fit(codebook, args.draws)
    tree = fit.idata
    meta = {**fit.metadata(), "version": "bench", "fitted_at": "2026-11-29T00:00:00+00:00"}
    start = time.perf_counter()
    cold = ForecastEngine(tree, meta, codebook, cache=False)
    build_ms = (time.perf_counter() - start) * 1e3
    warm = ForecastEngine(tree, meta, codebook)
    queries = random_queries(codebook, args.queries)
    cells = len(codebook.partners) * len(codebook.intel_types)

    print(f"posterior: 4 chains x {args.draws} draws = {cold.n_draws} samples; "
          f"{len(codebook.partners)} partners x {len(codebook.intel_types)} types = {cells} cells")
    print(f"engine construction (draws -> numpy): {build_ms:.1f} ms")
    it = iter(queries * 2)
    print(line("single query, cold", timed(lambda: cold.forecast(**next(it)), len(queries))))
    for q in queries:
        warm.forecast(**q)
    it = iter(queries)
    print(line("single query, warm (cached)", timed(lambda: warm.forecast(**next(it)),
                                                   len(queries))))
    print(line(f"full grid ({cells} cells), cold", timed(cold.grid, 30)))
    warm.grid()
    print(line(f"full grid ({cells} cells), warm", timed(warm.grid, 30)))
    batch = queries[:100]
    print(line("batch of 100 queries, cold", timed(lambda: cold.batch(batch), 30)))
    scen_a, scen_b = {"severity": 0}, {"severity": 3}
    print(line("compare, 1 partner x 8 types", timed(
        lambda: cold.compare("ISR", codebook.intel_type_codes, scen_a, scen_b), 30)))

    fresh = ForecastEngine(tree, meta, codebook)
    start = time.perf_counter()
    fresh.warm_up(fresh.all_scenarios())
    print(f"warm_up of all {len(fresh.all_scenarios())} scenario grids: "
          f"{time.perf_counter() - start:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(tmp)
        start = time.perf_counter()
        version = registry.save(fit.idata, fit.metadata()).version
        save_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        ForecastEngine.from_version(registry, version, codebook)
        load_ms = (time.perf_counter() - start) * 1e3
        size_mb = registry.get(version).posterior_path.stat().st_size / 1e6
    print(f"registry save (all groups, {size_mb:.0f} MB): {save_ms:.0f} ms; "
          f"ForecastEngine.from_version: {load_ms:.0f} ms")


if __name__ == "__main__":
    main()
