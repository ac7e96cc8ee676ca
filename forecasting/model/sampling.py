"""Sampling: compile the model once per process and structure, run the chosen sampler.

nutpie by default (the compiled model is cached and later fits swap the data in);
numpyro and PyMC's own NUTS through `pm.sample`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from cachetools import LRUCache

from forecasting.domain.cells import aggregate
from forecasting.domain.codebook import Codebook
from forecasting.model.arithmetic import (
    CLUSTER_SCALES,
    cluster_sums,
    coordinate_scales,
    sweep_cluster_means,
)
from forecasting.model.likelihood import register_jax
from forecasting.model.predictive import OBSERVED
from forecasting.model.priors import PriorSet
from forecasting.model.pymc_model import build_model, split_clusters
from forecasting.settings import SamplerSettings

SAMPLERS = ("nutpie", "numpyro", "pymc")
# Per-process caches keyed by model structure. A new key (new priors, a parameterization that
# flips, the cluster slots doubling) leaves the old entry dead, and a long-lived refit worker
# meets many: bounded, least recently used out. Four compiled models cover the current
# structure and a few it may go back to (a candidate's priors, a flipped parameterization).
COMPILED_KEPT = 4
PRIORS_KEPT = 8
_COMPILED: LRUCache[str, Any] = LRUCache(maxsize=COMPILED_KEPT)  # key -> nutpie compiled model


def structure_key(model: pm.Model) -> str:
    """What the compiled graph depends on: everything but the data values."""
    config = dict(getattr(model, "forecast_config", {}))
    shapes = {v.name: v.get_value().ndim for v in model.data_vars}
    payload = json.dumps({"config": config, "ranks": shapes}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _data_values(model: pm.Model) -> dict[str, np.ndarray]:
    return {v.name: v.get_value() for v in model.data_vars}


def _cores(chains: int) -> int:
    return max(1, min(chains, os.cpu_count() or 1))


# Deterministics nutpie leaves out of its trace, computed from the draws afterwards
# (`add_cluster_sums`): at 200,000 episodes cluster_eff is 25,000 values per draw, and
# nutpie's expansion callback would read the cluster layout (a compiled accessor) and compile
# the sums' graph again in every process.
COMPUTED_AFTER_SAMPLING = ("cluster_eff",)


def trace_names(model: pm.Model) -> list[str] | None:
    """The variables nutpie stores per draw: all but those computed after sampling."""
    if "cluster_eff_z" not in model.named_vars:
        return None
    return [v.name for v in model.unobserved_value_vars
            if v.name not in COMPUTED_AFTER_SAMPLING]


def compile_nutpie(model: pm.Model):
    """Compile `model` for nutpie once per process and structure (later fits swap the data)."""
    import nutpie

    key = structure_key(model)
    if key not in _COMPILED:
        _COMPILED[key] = nutpie.compile_pymc_model(model, var_names=trace_names(model))
    return _COMPILED[key]


def _coded_slots(model: pm.Model, name: str, z: xr.DataArray) -> np.ndarray:
    """The model's data array `name` (one column per reaction slot) for the coded reactions
    of `z`, without the spare slots."""
    return np.asarray(model[name].get_value())[:, :z.sizes["reaction"]]


def _cluster_scales(draws: xr.Dataset, shape: tuple[int, ...]) -> list[np.ndarray]:
    return [draws[name].values if name in draws else np.zeros(shape) for name in CLUSTER_SCALES]


def standard_cluster_coordinates(draws: xr.Dataset, model: pm.Model) -> xr.Dataset:
    """`draws` with partly centred cluster coordinates (a model with `centred_triggers`:
    arithmetic.coordinate_scales) replaced by the standard normal ones they stand for, the
    coordinates the log prior and every reader of `cluster_eff_z` assume."""
    if not getattr(model, "forecast_config", {}).get("centred_triggers") \
            or "cluster_eff_z" not in draws:
        return draws
    z = draws["cluster_eff_z"]
    layout = _coded_slots(model, "cluster_layout", z)
    inverse_scale = coordinate_scales(*_cluster_scales(draws, z.shape[:2]), layout,
                                      int(layout[2].max(initial=1)))[1]
    return draws.assign(cluster_eff_z=z * inverse_scale)


def add_cluster_sums(posterior: xr.Dataset, model: pm.Model) -> xr.Dataset:
    """`cluster_eff` from the sampled coordinates `cluster_eff_z` (and, swept, `trigger_terms_z`)
    and the scales, in numpy, chain by chain (the same `arithmetic.sweep_cluster_means` and
    `cluster_sums` the model's graph is built from). Partly centred coordinates
    (`arithmetic.coordinate_scales`) are stored as the standard ones they stand for, whose
    prior the log prior records."""
    posterior = standard_cluster_coordinates(posterior, model)
    if "cluster_eff" in posterior or "cluster_eff_z" not in posterior:
        return posterior
    z = posterior["cluster_eff_z"]
    layout = _coded_slots(model, "cluster_layout", z)
    scales = _cluster_scales(posterior, z.shape[:2])
    swept = posterior["trigger_terms_z"].values if "trigger_terms_z" in posterior else None
    if swept is not None:
        design = _coded_slots(model, "sweep_design", z)
        gram_parts = np.asarray(model["sweep_gram"].get_value())
    sums = np.empty(z.shape)
    for chain in range(z.shape[0]):
        coordinates = z.values[chain]
        if swept is not None:
            coordinates = sweep_cluster_means(coordinates, swept[chain], scales[0][chain],
                                              scales[1][chain], layout, design, gram_parts)[0]
        sums[chain] = cluster_sums(coordinates, scales[0][chain], scales[1][chain], layout)
    return posterior.assign(cluster_eff=(z.dims, sums))


def warm_up(episodes: pd.DataFrame, codebook: Codebook, priors: PriorSet,
            sampler_settings: SamplerSettings) -> float:
    """Compile the model the next fit of these episodes will need; returns the seconds spent.

    A refit worker calls this at start, so that its first refit does not pay the compile.
    """
    if sampler_settings.sampler != "nutpie" or len(episodes) == 0:
        return 0.0
    t0 = time.perf_counter()
    compile_nutpie(build_model(aggregate(episodes, codebook), priors))
    return time.perf_counter() - t0


def _sample_nutpie(model, settings: SamplerSettings, progress: bool, timings: dict):
    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata

    t0 = time.perf_counter()
    compiled = _COMPILED.get(structure_key(model))
    if compiled is None:
        compiled = compile_nutpie(model)
        timings["compile_cached"] = False
    else:
        # data the likelihood does not read (the counts, kept for observed_data) are not
        # part of the compiled model
        known = {var.name for var in compiled.shared_var_keys}
        compiled = compiled.with_data(**{k: v for k, v in _data_values(model).items()
                                         if k in known})
        timings["compile_cached"] = True
    timings["compile"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tree = nutpie.sample(compiled, draws=settings.draws, tune=settings.tune,
                       chains=settings.chains, cores=_cores(settings.chains),
                       seed=settings.seed, target_accept=settings.target_accept,
                       progress_bar=progress, save_warmup=False)
    timings["sampling"] = time.perf_counter() - t0
    patch_nutpie_idata(tree, model, sampling_time=timings["sampling"])
    for group in [g for g in tree.children if g.startswith("warmup")]:
        del tree[group]
    return tree


def _sample_pm(model, settings: SamplerSettings, progress: bool, timings: dict):
    if settings.sampler == "numpyro":
        register_jax()
    t0 = time.perf_counter()
    with model, warnings.catch_warnings():
        # jax/numpyro emit deprecation chatter of their own on some versions
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = pm.sample(draws=settings.draws, tune=settings.tune, chains=settings.chains,
                       cores=_cores(settings.chains), random_seed=settings.seed,
                       nuts_sampler=settings.sampler, progressbar=progress,
                       nuts={"target_accept": settings.target_accept},
                       compute_convergence_checks=False)
    total = time.perf_counter() - t0
    sampling = float(tree.posterior.attrs.get("sampling_time", total))
    timings["sampling"] = sampling
    # pm.sample compiles (pymc) or traces and JITs (numpyro) on every call
    timings["compile"] = max(total - sampling, 0.0)
    timings["compile_cached"] = False
    return tree


def drop_spare_slots(draws: xr.Dataset, model: pm.Model) -> xr.Dataset:
    """The cluster effects' spare slots (pymc_model.cluster_capacity) removed, and their
    labels taken from the model (a compiled model reused with new data keeps the labels
    it was compiled with)."""
    sizes = getattr(model, "cluster_sizes", {})
    for dim, n in sizes.items():
        if dim in draws.dims:
            draws = draws.isel({dim: slice(0, n)}).assign_coords(
                {dim: np.asarray(model.coords[dim][:n], dtype=object)})
    return draws


def sample(model: pm.Model, settings: SamplerSettings, progress: bool = False
           ) -> tuple[xr.DataTree, dict[str, Any]]:
    """Posterior draws of `model` (posterior, sample_stats, ...) and the timings (s)."""
    if settings.sampler not in SAMPLERS:
        raise ValueError(f"Requested sampler '{settings.sampler}' but it must be one of "
                         f"{list(SAMPLERS)}")
    timings: dict[str, Any] = {}
    if settings.sampler == "nutpie":
        tree = _sample_nutpie(model, settings, progress, timings)
    else:
        tree = _sample_pm(model, settings, progress, timings)
    posterior = add_cluster_sums(drop_spare_slots(tree["posterior"].to_dataset(), model), model)
    if "constant_data" in tree.children:
        tree["constant_data"] = tree["constant_data"].to_dataset().assign(
            getattr(model, "constants", {}))
    tree["posterior"] = bound_cluster_draws(posterior, model, settings.seed + 3)
    return tree, timings


# Cluster terms kept per draw beyond `cluster_eff` (their sum, which the log likelihood and
# the registry's derived groups read) up to this many values per variable: the raw
# cluster_eff_z and the split into event_eff (trigger) and reaction_eff (reaction). 4 x 2,000
# draws of 200,000 simulated episodes (25,000 reactions, 15,000 triggers) would hold 1.6 GB
# in each; the seed data and 20,000 episodes keep them all. The forecasts read none of them
# (a new trigger's cluster terms are integrated out, a live trigger's conditioned on its
# coded reactions from the scales alone).
CLUSTER_DRAWS_MAX_VALUES = 50_000_000


def bound_cluster_draws(posterior: xr.Dataset, model: pm.Model, seed: int) -> xr.Dataset:
    """The posterior with its per-draw cluster terms split (`split_clusters`) while they stay
    under CLUSTER_DRAWS_MAX_VALUES, else only their sum `cluster_eff` (attrs
    `cluster_draws` says which)."""
    n_draws = posterior.sizes.get("chain", 1) * posterior.sizes.get("draw", 1)
    info = getattr(model, "cluster_triggers", None)
    n_clusters = len(info["labels"]) + len(info["of_reaction"]) if info else 0
    if n_draws * n_clusters <= CLUSTER_DRAWS_MAX_VALUES:
        return split_clusters(posterior, model, seed)
    posterior = posterior.drop_vars("cluster_eff_z", errors="ignore")
    posterior.attrs["cluster_draws"] = "cluster_eff only (event and reaction effects not split)"
    return posterior


_PRIORS: LRUCache[tuple, xr.Dataset] = LRUCache(maxsize=PRIORS_KEPT)  # (structure, draws, seed)


def add_observed_data(tree: xr.DataTree, model: pm.Model) -> None:
    """The observed level counts per cell (group observed_data), which diagnostics, plots
    and the per-episode LOO read; the likelihood itself is a Potential, not an observed
    variable, so the samplers do not add them."""
    if "counts" not in model.named_vars:
        return
    if "observed_data" in tree.children and OBSERVED in tree["observed_data"]:
        return
    tree["observed_data"] = xr.Dataset(
        {OBSERVED: (("cell", "level"), np.asarray(model["counts"].get_value()))},
        coords={"cell": np.asarray(model.coords["cell"]),
                "level": np.asarray(model.coords["level"])})


def prior_draws(model: pm.Model, draws: int, seed: int) -> xr.Dataset:
    """Prior draws of every parameter (group `prior`); they do not depend on the data.

    From the model's own prior, the cutpoints' ordering included
    (`prior_predictive.sample_prior`: `pm.sample_prior_predictive` alone ignores the ordered
    transform and gave unordered cutpoints, hence negative level probabilities, in most
    draws). The likelihood is a Potential, which PyMC cannot draw from: `replicate_counts`
    derives the prior predictive from these draws. Cached per model structure, so that a
    refit in the same process pays nothing.
    """
    from forecasting.model.prior_predictive import sample_prior

    key = (structure_key(model), draws, seed)
    if key not in _PRIORS:
        _PRIORS[key] = sample_prior(model, draws, seed)
    return standard_cluster_coordinates(drop_spare_slots(_PRIORS[key], model), model)
