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

import pandas as pd
import pymc as pm
import xarray as xr

from forecasting.domain.cells import aggregate
from forecasting.domain.codebook import Codebook
from forecasting.model import trigger_rates
from forecasting.model.arithmetic import CENTERS
from forecasting.model.diagnostics import diagnose
from forecasting.model.gate import Verdict, gate
from forecasting.model.predictive import (
    add_log_likelihood,
    add_posterior_predictive,
    cell_level_probabilities,
    replicate_counts,
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
        t0 = time.perf_counter()
        probs = cell_level_probabilities(tree)  # the log likelihood and the replicates share them
        add_log_likelihood(tree, probs)
        timings["log_likelihood"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pm.stats.compute_log_prior(tree, model=model, progressbar=False)
        timings["log_prior"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tree["prior"] = prior_draws(model, prior_draws_n, settings.seed + 1)
        tree["prior_predictive"] = replicate_counts(tree["prior"].to_dataset(), tree,
                                                    seed=settings.seed + 1)
        timings["prior_predictive"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        add_posterior_predictive(tree, seed=settings.seed + 2, probs=probs)
        del probs
        timings["posterior_predictive"] = time.perf_counter() - t0
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
