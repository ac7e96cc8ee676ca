"""A fit end to end: sample, add the predictive groups, diagnose, gate, with the fit's identity.

`fit_and_diagnose` is the single entry point of the CLI and the refit worker (through
forecasting.services.fits): episodes in, a `FitResult` (posterior tree, diagnostics, verdict,
identity) out. The steps live in their own modules: sampling, predictive, diagnostics, gate.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from forecasting.domain.cells import aggregate
from forecasting.domain.codebook import Codebook
from forecasting.model import trigger_rates
from forecasting.model.arithmetic import CENTERS
from forecasting.model.diagnostics import diagnose
from forecasting.model.gate import Verdict, gate
from forecasting.model.log_prior import log_prior
from forecasting.model.predictive import (
    cell_eta,
    cell_level_probabilities,
    extras_max_draws,
    in_blocks,
    log_likelihood,
    replicate_counts,
    thin,
)
from forecasting.model.priors import PriorSet
from forecasting.model.pymc_model import build_model
from forecasting.model.sampling import add_observed_data, prior_draws, sample
from forecasting.settings import GateThresholds, SamplerSettings

log = logging.getLogger(__name__)
PRIOR_DRAWS = 500  # prior draws stored with every fit (group prior, prior_predictive)


def fit(model: pm.Model, sampler_settings: SamplerSettings, progress: bool = False,
        prior_draws_n: int = PRIOR_DRAWS, extras: bool = True) -> xr.DataTree:
    """Sample `model` and return the full tree.

    Groups: posterior, sample_stats, observed_data, constant_data, and (`extras=True`)
    log_likelihood, log_prior, prior, prior_predictive, posterior_predictive. Timings (s)
    and the model's configuration are in the root attrs.
    """
    settings = sampler_settings
    t_start = time.perf_counter()
    tree, timings = sample(model, settings, progress)
    add_observed_data(tree, model)
    if extras:
        _add_extras(tree, model, settings, prior_draws_n, timings)
    timings["fit_total"] = time.perf_counter() - t_start
    config = getattr(model, "forecast_config", {})
    tree.attrs.update({
        "severity_center": CENTERS["severity"],
        "alignment_center": CENTERS["alignment"],
        "sampler": json.dumps(asdict(settings), sort_keys=True),
        "parameterization": json.dumps(config.get("parameterization", {}), sort_keys=True),
        "priors_hash": config.get("priors_hash", ""),
        "timings": json.dumps(timings, sort_keys=True),
    })
    return tree


def _add_extras(tree: xr.DataTree, model: pm.Model, settings: SamplerSettings,
                prior_draws_n: int, timings: dict[str, Any]) -> None:
    """log_likelihood, log_prior, prior, prior_predictive, posterior_predictive.

    The per-cell groups hold at most `predictive.extras_max_draws(cells)` draws, evenly
    thinned (every draw up to predictive.EXTRAS_MAX_VALUES (draw, cell) values: the seed
    data and 20,000 episodes keep them all), computed in blocks of draws so that memory stays
    bounded; `extras_draws` in the root attrs says how many posterior draws they hold.
    """
    n_cells = tree.observed_data.sizes["cell"]
    most = extras_max_draws(n_cells)
    params = thin(tree.posterior.to_dataset(), most)
    rng = np.random.default_rng(settings.seed + 2)
    spent = {"log_likelihood": 0.0, "posterior_predictive": 0.0}

    def both(draws: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
        t0 = time.perf_counter()
        eta = cell_eta(tree, draws)  # the two groups share it
        probs = cell_level_probabilities(tree, draws, eta)
        ll = log_likelihood(tree, draws, probs, eta)
        t1 = time.perf_counter()
        replicated = replicate_counts(draws, tree, rng=rng, probs=probs)
        spent["log_likelihood"] += t1 - t0
        spent["posterior_predictive"] += time.perf_counter() - t1
        return ll, replicated

    tree["log_likelihood"], tree["posterior_predictive"] = in_blocks(both, params, n_cells)
    timings.update(spent)
    t0 = time.perf_counter()
    add_log_prior(tree, model)
    timings["log_prior"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prior = prior_draws(model, prior_draws_n, settings.seed + 1)
    tree["prior"] = prior
    prior_rng = np.random.default_rng(settings.seed + 1)
    (tree["prior_predictive"],) = in_blocks(
        lambda draws: replicate_counts(draws, tree, rng=prior_rng),
        thin(prior, most), n_cells)
    timings["prior_predictive"] = time.perf_counter() - t0
    tree.attrs["extras_draws"] = int(params.sizes["chain"] * params.sizes["draw"])


def add_log_prior(tree: xr.DataTree, model: pm.Model) -> None:
    """Group log_prior: in numpy from the priors the model noted as it was built
    (forecasting.model.log_prior), through PyMC for a model that noted none."""
    terms = getattr(model, "prior_terms", {})
    # a swept coordinate's prior is recorded for its term (pymc_model._swept_variable)
    if {rv.name for rv in model.free_RVs} - set(getattr(model, "swept", {})) <= set(terms):
        tree["log_prior"] = log_prior(tree.posterior.to_dataset(), terms)
    else:
        pm.stats.compute_log_prior(tree, model=model, progressbar=False)


@dataclass
class FitResult:
    idata: xr.DataTree
    diagnostics: dict[str, Any]
    verdict: Verdict
    model_config: dict[str, Any]
    priors: dict[str, Any]
    priors_hash: str
    data_fingerprint: str
    n_episodes: int
    sampler: dict[str, Any]
    timings: dict[str, Any]
    codebook_version: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def metadata(self) -> dict[str, Any]:
        """The metadata `forecasting.registry.Registry.save` expects."""
        return {
            "episodes": self.n_episodes,
            "data_hash": self.data_fingerprint,
            "priors_hash": self.priors_hash,
            "priors": self.priors,
            "model_config": self.model_config,
            "sampler": self.sampler,
            "verdict": self.verdict.verdict,
            "reasons": list(self.verdict.reasons),
            "diagnostics": self.diagnostics,
            "timings": self.timings,
            "codebook_version": self.codebook_version,
        }


def fit_and_diagnose(episodes: pd.DataFrame, codebook: Codebook, priors: PriorSet,
                     sampler_settings: SamplerSettings, gate_thresholds: GateThresholds,
                     parameterization: dict[str, str] | str | None = None,
                     progress: bool = False) -> FitResult:
    """Episodes -> cells -> model -> fit -> diagnostics -> verdict, with the fit's identity."""
    t0 = time.perf_counter()
    cells = aggregate(episodes, codebook)
    if cells.n_episodes == 0:
        raise ValueError("no episodes to fit; import episodes first")
    model = build_model(cells, priors, parameterization)
    t_build = time.perf_counter() - t0
    tree = fit(model, sampler_settings, progress=progress)
    if cells.trigger_years is not None:  # the trigger dates' years, for the checks by decade
        tree["constant_data"] = tree["constant_data"].to_dataset().assign(
            trigger_year=xr.DataArray(cells.trigger_years, dims="trigger",
                                      coords={"trigger": cells.coords["trigger"]}))
    diagnostics = diagnose(tree)
    verdict = gate(diagnostics, gate_thresholds)
    # how often triggers arrive, stored with the version for its horizon forecasts (issue 17)
    tree[trigger_rates.GROUP] = trigger_rates.fit_trigger_rates(episodes, codebook,
                                                                seed=sampler_settings.seed)
    config = dict(model.forecast_config)
    config.pop("coords", None)  # the codebook version names them
    timings = dict(diagnostics["timings"]) | {"build": t_build,
                                              "total": time.perf_counter() - t0}
    tree.attrs.update({"data_fingerprint": cells.fingerprint, "n_episodes": cells.n_episodes,
                     "verdict": verdict.verdict})
    log.info("fit %s: %d episodes, %d cells, verdict %s %s", config["parameterization"],
             cells.n_episodes, cells.n_cells, verdict.verdict, verdict.reasons)
    return FitResult(
        idata=tree, diagnostics=diagnostics, verdict=verdict, model_config=config,
        priors=priors.to_dict(), priors_hash=priors.content_hash,
        data_fingerprint=cells.fingerprint, n_episodes=cells.n_episodes,
        sampler=asdict(sampler_settings), timings=timings,
        codebook_version=cells.codebook_version)
