"""A model version's size on disk, stored as before issue 15 ("full") and lean.

    PYTENSOR_FLAGS=base_compiledir=.cache/pytensor .venv/bin/python bench/bench_registry_size.py \
        --episodes 636 --source fit
    PYTENSOR_FLAGS=base_compiledir=.cache/pytensor .venv/bin/python bench/bench_registry_size.py \
        --episodes 17000 --source prior

What is stored is built from the simulator (forecasting.evaluation.simulate.seed_like: the
seed file's shape, at 636 episodes like data/episodes.csv, or at 17,000) and either
(`--source fit`) a SHORT real fit, 4 chains x 100 draws after 100 tuning steps, or
(`--source prior`, for sizes where even that takes too long on 2 cores) 400 draws of the
model's prior, split into 4 chains and given the sampler's cluster split, with sample_stats
from a short fit of the seed-sized data (they do not depend on the number of cells). Either
is stretched to the service's 4 x 2,000 draws by resampling draws and adding noise of a
tenth of each element's sd (so that the mantissas are as random as real draws, which is
what decides how well they compress), then the groups a fit adds are computed as
forecasting.model.fitting.fit computes them (per-cell log likelihood, log prior, 500 prior
draws and their predictive, posterior predictive; the two per-cell groups by the registry's
blocked recomputation, which gives the same values with bounded memory). The values are not a converged
posterior; the shapes and dtypes are a served fit's, and sizes depend on little else.

Reported per size: every group's bytes in memory, the version's bytes on disk as
`Registry(lean=False)` writes it (every group, float64; the posterior predictive dropped
above 50 MB, as before) and as `Registry()` writes it (lean), the save time, the time to
load the posterior (what a server pays), and the time to recompute the derived groups.
`--float-gzip` also writes the lean tree with gzip on the float draws, to show what it
would gain.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from forecasting.registry import Registry, _integer_compression  # noqa: E402
from forecasting.settings import DEFAULT_DATA_DIR, DEFAULT_PRIORS_DIR, SamplerSettings  # noqa: E402

SERVED_CHAINS, SERVED_DRAWS = SamplerSettings.chains, SamplerSettings.draws
SEED_EPISODES = 636  # rows of data/episodes.csv


def stretch(ds, draws: int, rng, jitter: bool):
    """`ds` (chain, draw, ...) resampled to `draws` draws per chain (noise added to floats)."""
    pick = rng.integers(0, ds.sizes["draw"], size=draws)
    out = ds.isel(draw=pick).assign_coords(draw=np.arange(draws))
    if not jitter:
        return out
    noisy = {}
    for name, var in out.data_vars.items():
        if var.dtype.kind == "f":
            sd = ds[name].std(("chain", "draw")).values
            noisy[name] = var + 0.1 * sd * rng.standard_normal(var.shape)
    return out.assign(noisy)


def _constant_data(model):
    """The model's data containers (index arrays, scenario values), as a sampler stores them."""
    import xarray as xr

    data = {}
    for var in model.data_vars:
        value = np.asarray(var.get_value())
        dims = model.named_vars_to_dims.get(var.name) or [
            f"{var.name}_dim_{i}" for i in range(value.ndim)]
        data[var.name] = (tuple(dims), value)
    return xr.Dataset(data)


_SHORT_FITS: dict = {}  # n_episodes -> (tree of a short fit), per process


def short_fit(n_episodes: int, short_draws: int, short_tune: int, seed: int):
    """(tree, model, cells, seconds) of a short real fit of `n_episodes` simulated episodes."""
    from forecasting.domain.cells import aggregate
    from forecasting.domain.codebook import load_codebook
    from forecasting.evaluation.simulate import seed_like
    from forecasting.model.priors import load_priors
    from forecasting.model.pymc_model import build_model
    from forecasting.model.sampling import sample

    codebook = load_codebook(DEFAULT_DATA_DIR / "codebook.toml")
    priors = load_priors(DEFAULT_PRIORS_DIR / "default.toml")
    episodes, _ = seed_like(codebook, n=n_episodes, seed=seed)
    cells = aggregate(episodes, codebook)
    model = build_model(cells, priors)
    if n_episodes not in _SHORT_FITS and short_draws:
        settings = SamplerSettings(chains=SERVED_CHAINS, draws=short_draws, tune=short_tune,
                                   seed=seed)
        t0 = time.perf_counter()
        tree, _ = sample(model, settings)
        _SHORT_FITS[n_episodes] = (tree, time.perf_counter() - t0)
    tree, seconds = _SHORT_FITS.get(n_episodes, (None, 0.0))
    return tree, model, cells, priors, seconds


def build_version(n_episodes: int, draws: int, short_draws: int, short_tune: int, seed: int,
                  source: str = "fit"):
    """(tree, metadata, cells, timings) of a version of `n_episodes` simulated episodes."""
    import pymc as pm
    import xarray as xr

    from forecasting.model.fitting import PRIOR_DRAWS
    from forecasting.model.predictive import replicate_counts
    from forecasting.model.pymc_model import split_clusters
    from forecasting.model.sampling import add_observed_data, prior_draws
    from forecasting.registry import derive_log_likelihood, derive_posterior_predictive

    rng = np.random.default_rng(seed)
    if source == "fit":
        fitted, model, cells, priors, fit_s = short_fit(n_episodes, short_draws, short_tune, seed)
        posterior = fitted["posterior"].to_dataset()
        stats = fitted["sample_stats"].to_dataset()
        seconds = {"short_fit": fit_s}
    elif source == "prior":
        small = short_fit(SEED_EPISODES, short_draws, short_tune, seed)[0]
        stats = small["sample_stats"].to_dataset()
        _, model, cells, priors, _ = short_fit(n_episodes, 0, 0, seed)
        t0 = time.perf_counter()
        prior = prior_draws(model, SERVED_CHAINS * short_draws, seed)
        posterior = xr.Dataset(
            {name: (var.dims, var.values.reshape(SERVED_CHAINS, short_draws, *var.shape[2:]))
             for name, var in prior.data_vars.items()},
            coords={k: c for k, c in prior.coords.items() if k not in ("chain", "draw")})
        posterior = split_clusters(posterior, model, seed + 3)
        seconds = {"prior_draws": time.perf_counter() - t0}
    else:
        raise ValueError(f"Requested source '{source}' but it must be one of ['fit', 'prior']")
    tree = xr.DataTree.from_dict({
        "posterior": stretch(posterior, draws, rng, jitter=True),
        "sample_stats": stretch(stats, draws, rng, jitter=False)})
    tree["constant_data"] = (fitted["constant_data"].to_dataset() if source == "fit"
                             else _constant_data(model))
    add_observed_data(tree, model)
    t0 = time.perf_counter()
    sampler = {"chains": SERVED_CHAINS, "draws": draws, "seed": seed}
    # the registry's blocked recomputation, equal to predictive's add_log_likelihood and
    # add_posterior_predictive (tests/test_registry.py) without 4 GB of probabilities at once
    tree["log_likelihood"] = derive_log_likelihood(tree, {})
    pm.stats.compute_log_prior(tree, model=model, progressbar=False)
    tree["prior"] = prior_draws(model, PRIOR_DRAWS, seed + 1)
    tree["prior_predictive"] = replicate_counts(tree["prior"].to_dataset(), tree, seed=seed + 1)
    tree["posterior_predictive"] = derive_posterior_predictive(tree, {"sampler": sampler},
                                                               max_draws=None)
    seconds["extras"] = time.perf_counter() - t0
    meta = {"episodes": cells.n_episodes, "data_hash": cells.fingerprint,
            "priors_hash": priors.content_hash, "model_config": {"bench": "registry_size"},
            "sampler": sampler, "verdict": "pass"}
    return tree, meta, cells.n_cells, seconds


def measure(n_episodes: int, args) -> dict:
    tree, meta, n_cells, seconds = build_version(n_episodes, args.draws, args.short_draws,
                                                 args.short_tune, args.seed, args.source)
    result = {"episodes": n_episodes, "cells": n_cells, "source": args.source,
              "draws": f"{SERVED_CHAINS} x {args.draws}",
              "groups_in_memory_mb": {g: round(tree[g].to_dataset().nbytes / 1e6, 2)
                                      for g in tree.children},
              "build_seconds": {k: round(v, 1) for k, v in seconds.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, registry in (("full", Registry(Path(tmp) / "full", lean=False)),
                                ("lean", Registry(Path(tmp) / "lean"))):
            t0 = time.perf_counter()
            mv = registry.save(tree, meta)
            saved = time.perf_counter() - t0
            t0 = time.perf_counter()
            registry.load_posterior(mv.version, groups=["posterior"])
            loaded = time.perf_counter() - t0
            result[label] = {"mb": round(mv.posterior_path.stat().st_size / 1e6, 1),
                             "save_s": round(saved, 2), "load_posterior_s": round(loaded, 2),
                             "dropped": mv.metadata.get("dropped_groups", []),
                             "derived": mv.derived_groups}
            if label == "lean":
                for group in mv.derived_groups:
                    t0 = time.perf_counter()
                    registry.load_posterior(mv.version, groups=[group])
                    result[label][f"recompute_{group}_s"] = round(time.perf_counter() - t0, 2)
        if args.float_gzip:
            lean = Registry(Path(tmp) / "x")._tree_to_store(tree, {
                "version": "x", "priors_hash": "p", "data_hash": "d"})[0]
            encoding = _integer_compression(lean)
            for node in lean.subtree:
                for name, var in node.to_dataset().data_vars.items():
                    if var.dtype.kind == "f":
                        encoding.setdefault(node.path, {})[name] = {
                            "compression": "gzip", "compression_opts": 1, "shuffle": True}
            path = Path(tmp) / "gzip.nc"
            t0 = time.perf_counter()
            lean.to_netcdf(path, engine="h5netcdf", encoding=encoding)
            result["lean_float_gzip"] = {"mb": round(path.stat().st_size / 1e6, 1),
                                         "save_s": round(time.perf_counter() - t0, 2)}
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, nargs="+", default=[SEED_EPISODES])
    parser.add_argument("--source", choices=("fit", "prior"), default="fit",
                        help="draws from a short fit, or from the prior (large sizes)")
    parser.add_argument("--draws", type=int, default=SERVED_DRAWS,
                        help="draws per chain of the stored version (stretched)")
    parser.add_argument("--short-draws", type=int, default=100)
    parser.add_argument("--short-tune", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--float-gzip", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [measure(n, args) for n in args.episodes]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for r in results:
        print(f"{r['episodes']} episodes, {r['cells']} cells, {r['draws']} draws from "
              f"{r['source']} "
              f"(built in {r['build_seconds']})")
        print("  in memory (MB): " + ", ".join(f"{g} {mb}"
                                               for g, mb in r["groups_in_memory_mb"].items()))
        for label in ("full", "lean", "lean_float_gzip"):
            if label in r:
                print(f"  {label:<16} {r[label]}")


if __name__ == "__main__":
    main()
