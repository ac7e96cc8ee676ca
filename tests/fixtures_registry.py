"""Fabricated posteriors and model registries for tests (no sampling, built in milliseconds).

A fabricated tree has the groups and names a real fit has (see forecasting/model.py's contract):
posterior (cutpoints, pt_eff, trigger_eff, beta_severity, beta_alignment, partner_eff, type_eff,
bloc_eff, sigma_*), sample_stats, prior, posterior_predictive, observed_data, log_likelihood, and
the root attrs severity_center / alignment_center. Imported by tests/conftest.py with
`from fixtures_registry import *`; the bench imports `fabricate_posterior` too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from forecasting.registry import Registry
from forecasting.serving.forecasts import ForecastEngine

__all__ = [
    "fabricate_posterior",
    "fake_metadata",
    "fake_posterior",
    "fake_engine",
    "model_registry",
    "registry_template",
    "registry_with_current",
]

CUTPOINT_LABELS = ["0|1", "1|2", "2|3"]
SCALARS = ("sigma_bloc", "sigma_partner", "sigma_type", "sigma_pt", "sigma_trigger")


class _Draws:
    """Draws of a parameter around one location per element: loc ~ N(mean, spread) once, then
    per draw N(loc, sd). A posterior is concentrated (sd small); a prior has loc = mean."""

    def __init__(self, rng, sample_shape, concentrated: bool):
        self.rng, self.sample_shape, self.concentrated = rng, sample_shape, concentrated

    def __call__(self, mean, spread, sd, shape=(), positive=False):
        loc = self.rng.normal(mean, spread, shape) if self.concentrated else np.asarray(mean)
        scale = sd if self.concentrated else spread
        x = self.rng.normal(np.broadcast_to(loc, shape), scale, self.sample_shape + tuple(shape))
        return np.abs(x) if positive else x


def _parameters(rng, shape, partners, blocs_of, blocs, types, triggers, concentrated=True):
    """One set of draws of every parameter, shaped `shape + dims` (posterior or prior)."""
    draw = _Draws(rng, shape, concentrated)
    bloc_index = np.array([blocs.index(b) for b in blocs_of])
    bloc_eff = draw(0, 0.5, 0.15, (len(blocs),))
    partner_eff = bloc_eff[..., bloc_index] + draw(0, 0.3, 0.15, (len(partners),))
    type_eff = draw(0, 0.4, 0.1, (len(types),))
    pt_eff = (partner_eff[..., :, None] + type_eff[..., None, :]
              + draw(0, 0.15, 0.1, (len(partners), len(types))))
    # sorted so that the cutpoints are increasing in every draw, as the ordered transform ensures
    cutpoints = np.sort(draw(np.array([-0.5, 1.0, 2.5]), 0.1, 0.15, (3,)), axis=-1)
    return {
        "cutpoints": (("cutpoint",), cutpoints),
        "pt_eff": (("partner", "intel_type"), pt_eff),
        "trigger_eff": (("trigger_type",), draw(0, 0.3, 0.1, (len(triggers),))),
        # positive in (nearly) every draw: tests rely on severity raising the risk
        "beta_severity": ((), draw(0.6, 0.02, 0.08)),
        "beta_alignment": ((), draw(0.4, 0.02, 0.08)),
        "partner_eff": (("partner",), partner_eff),
        "type_eff": (("intel_type",), type_eff),
        "bloc_eff": (("bloc",), bloc_eff),
        **{name: ((), draw(0.5, 0.1, 0.1, positive=True)) for name in SCALARS},
    }


def _dataset(params, sample_dims, coords):
    return xr.Dataset(
        {name: (sample_dims + dims, values) for name, (dims, values) in params.items()},
        coords=coords,
    )


def fabricate_posterior(
    codebook,
    *,
    chains: int = 4,
    draws: int = 250,
    seed: int = 0,
    partners: list[str] | None = None,
    n_cells: int = 40,
    with_diagnostic_groups: bool = True,
) -> xr.DataTree:
    """A DataTree shaped like a real fit, from random draws (`partners`: default the codebook's)."""
    rng = np.random.default_rng(seed)
    partners = list(codebook.partner_codes if partners is None else partners)
    blocs = list(codebook.bloc_codes)
    types = list(codebook.intel_type_codes)
    triggers = list(codebook.trigger_type_codes)
    blocs_of = [codebook.bloc_of(p) for p in partners]
    coords = {
        "chain": np.arange(chains), "draw": np.arange(draws), "cutpoint": CUTPOINT_LABELS,
        "partner": partners, "intel_type": types, "trigger_type": triggers, "bloc": blocs,
    }
    posterior = _dataset(
        _parameters(rng, (chains, draws), partners, blocs_of, blocs, types, triggers),
        ("chain", "draw"), coords)
    groups: dict[str, xr.Dataset] = {"posterior": posterior}
    if with_diagnostic_groups:
        groups.update(_diagnostic_groups(rng, chains, draws, n_cells, coords,
                                         partners, blocs_of, blocs, types, triggers))
    tree = xr.DataTree.from_dict(groups)
    tree.attrs.update({"severity_center": 1.5, "alignment_center": 1.5,
                       "inference_library": "fabricated"})
    return tree


def _diagnostic_groups(rng, chains, draws, n_cells, coords, partners, blocs_of, blocs, types,
                       triggers):
    level = np.arange(4)
    sample_stats = xr.Dataset(
        {
            "diverging": (("chain", "draw"), np.zeros((chains, draws), dtype=bool)),
            "energy": (("chain", "draw"), rng.normal(100, 5, (chains, draws))),
            "maxdepth_reached": (("chain", "draw"), np.zeros((chains, draws), dtype=bool)),
            "lp": (("chain", "draw"), rng.normal(-100, 3, (chains, draws))),
        },
        coords={"chain": coords["chain"], "draw": coords["draw"]},
    )
    prior_draws = 200
    prior = _dataset(
        _parameters(rng, (1, prior_draws), partners, blocs_of, blocs, types, triggers,
                    concentrated=False),
        ("chain", "draw"), {**coords, "chain": [0], "draw": np.arange(prior_draws)})
    # counts per cell and level: observed, and replicated per draw around the same frequencies
    freqs = np.array([0.55, 0.2, 0.15, 0.1])
    totals = rng.integers(1, 12, n_cells)
    observed = np.stack([rng.multinomial(n, freqs) for n in totals])
    replicated = rng.multinomial(totals[None, None, :], freqs, size=(chains, draws, n_cells))
    cell_coords = {"cell": np.arange(n_cells), "level": level}
    return {
        "sample_stats": sample_stats,
        "prior": prior,
        "observed_data": xr.Dataset({"level_counts": (("cell", "level"), observed)},
                                    coords=cell_coords),
        "posterior_predictive": xr.Dataset(
            {"level_counts": (("chain", "draw", "cell", "level"), replicated)},
            coords={"chain": coords["chain"], "draw": coords["draw"], **cell_coords}),
        "log_likelihood": xr.Dataset(
            {"level_counts": (("chain", "draw", "cell"),
                              rng.normal(-2, 0.3, (chains, draws, n_cells)))},
            coords={"chain": coords["chain"], "draw": coords["draw"], "cell": cell_coords["cell"]}),
    }


def fake_metadata(verdict: str = "pass", *, data_hash: str = "data-0001", episodes: int = 412,
                  **overrides) -> dict:
    """Metadata as forecasting/fitting hands it to Registry.save (the registry sets the version)."""
    meta = {
        "episodes": episodes,
        "data_hash": data_hash,
        "codebook_version": "1.0.0",
        "priors": {"beta_severity": {"distribution": "Normal", "mu": 0.0, "sigma": 1.0}},
        "priors_hash": "priors-0001",
        "model_config": {"parameterization": {"partner": "non_centered", "pt": "non_centered"}},
        "sampler": {"sampler": "nutpie", "chains": 4, "draws": 250, "tune": 250, "seed": 1},
        "timings": {"compile_s": 0.0, "sample_s": 0.0},
        "diagnostics": {"max_rhat": 1.003, "min_ess_bulk": 812.0, "divergences": 0},
        "verdict": verdict,
        "reasons": [] if verdict == "pass" else ["max_rhat 1.05 > 1.01"],
    }
    meta.update(overrides)
    return meta


@pytest.fixture(scope="session")
def fake_posterior(codebook) -> xr.DataTree:
    """Shared read-only fabricated fit (4 chains x 250 draws); copy it before changing it."""
    return fabricate_posterior(codebook)


@pytest.fixture(scope="session")
def fake_engine(fake_posterior, codebook) -> ForecastEngine:
    meta = {**fake_metadata(), "version": "fabricated01", "fitted_at": "2026-11-29T00:00:00+00:00"}
    return ForecastEngine(fake_posterior, meta, codebook)


@pytest.fixture
def model_registry(tmp_path) -> Registry:
    """An empty registry in a temporary folder."""
    return Registry(tmp_path / "models")


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory, fake_posterior) -> Path:
    """Root of a registry with one passing, current version; saved once (h5netcdf takes ~1 s)."""
    registry = Registry(tmp_path_factory.mktemp("registry-template") / "models")
    registry.promote(registry.save(fake_posterior, fake_metadata()).version)
    return registry.root


@pytest.fixture
def registry_with_current(tmp_path, registry_template) -> Registry:
    """A fresh copy of that registry at tmp_path / "models" (Settings.with_instance(tmp_path)'s
    registry_path), so that a test may promote or save freely."""
    root = tmp_path / "models"
    shutil.copytree(registry_template, root)
    return Registry(root)
