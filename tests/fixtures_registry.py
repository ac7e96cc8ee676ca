"""Model versions for tests, every one from the session's real fit (fixtures_model).

A test that needs a version with other properties (a failed verdict, a second passing version)
derives it from that fit: a copy of its tree saved with edited metadata (`derive`), never a tree
written by hand. Imported by tests/conftest.py with `from fixtures_registry import *`.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import xarray as xr

from forecasting.registry import ModelVersion, Registry
from forecasting.serving.forecasts import ForecastEngine

__all__ = [
    "FAILED_REASON",
    "copy_version",
    "derive",
    "fit_metadata",
    "save_fit_versions",
    "fitted_version",
    "fitted_tree",
    "fitted_engine",
    "model_registry",
    "registry_template",
    "registry_with_current",
]

# Filled in by Registry.save, not by the fit.
_REGISTRY_KEYS = ("version", "fitted_at", "package_versions", "posterior_sha256", "dropped_groups",
                  "derived_groups")
# A failed derived version fails on R-hat, worded as forecasting's gate words it, against the
# session's thresholds (fixtures_model.SMALL_GATE).
FAILED_RHAT = 1.08
FAILED_REASON = f"max_rhat: {FAILED_RHAT} (needed <= 1.05)"


def fit_metadata(version: ModelVersion) -> dict:
    """The metadata the fit handed to Registry.save for `version` (a deep copy)."""
    return copy.deepcopy({k: v for k, v in version.metadata.items() if k not in _REGISTRY_KEYS})


def derive(tree: xr.DataTree, metadata: dict, *, verdict: str | None = None,
           **changes) -> tuple[xr.DataTree, dict]:
    """A real fit's tree and metadata, copied, with `changes` to the metadata.

    verdict="fail" records a fit whose R-hat failed the gate (diagnostics and reasons agree).
    The tree's root attrs that repeat the metadata (verdict, data fingerprint, episodes) follow.
    Give another data_hash (or sampler) to get another version id.
    """
    meta = copy.deepcopy(metadata) | changes
    if verdict == "fail":
        meta.update(verdict="fail", reasons=[FAILED_REASON],
                    diagnostics={**meta.get("diagnostics", {}), "max_rhat": FAILED_RHAT})
    elif verdict is not None:
        meta.update(verdict=verdict, reasons=[])
    out = tree.copy()
    out.attrs = {**tree.attrs, "verdict": meta["verdict"], "data_fingerprint": meta["data_hash"],
                 "n_episodes": meta["episodes"]}
    return out, meta


def copy_version(version: ModelVersion, registry: Registry) -> ModelVersion:
    """The stored version, files unchanged, into another registry (faster than a save)."""
    shutil.copytree(version.path, registry.root / version.version)
    return registry.get(version.version)


def save_fit_versions(registry: Registry, version: ModelVersion) -> dict[str, str]:
    """Three versions in `registry`, none current, from the session's fit `version`:

    served: the fit as stored (every group); second: another passing version (its posterior
    group, other data of 500 episodes); failed: its posterior group, failed on R-hat.
    """
    posterior = Registry(version.path.parent).load_posterior(version.version,
                                                             groups=["posterior"])
    meta = fit_metadata(version)
    second = derive(posterior, meta, data_hash=f"{meta['data_hash']}-second", episodes=500)
    failed = derive(posterior, meta, verdict="fail", data_hash=f"{meta['data_hash']}-failed")
    return {"served": copy_version(version, registry).version,
            "second": registry.save(*second).version,
            "failed": registry.save(*failed).version}


@pytest.fixture(scope="session")
def fitted_version(fitted_instance) -> ModelVersion:
    """The session's fit as stored: passing (against SMALL_GATE) and current."""
    return fitted_instance.version


@pytest.fixture(scope="session")
def fitted_tree(fitted_version) -> xr.DataTree:
    """The stored tree of that version, every group (read-only: copy it before changing it)."""
    return Registry(fitted_version.path.parent).load_posterior(fitted_version.version)


@pytest.fixture(scope="session")
def fitted_engine(fitted_version, codebook) -> ForecastEngine:
    return ForecastEngine.from_version(Registry(fitted_version.path.parent),
                                       fitted_version.version, codebook)


@pytest.fixture
def model_registry(tmp_path) -> Registry:
    """An empty registry in a temporary folder."""
    return Registry(tmp_path / "models")


@pytest.fixture(scope="session")
def registry_template(fitted_instance) -> Path:
    """Root of a registry with one version, the session's fit, current (read-only)."""
    return fitted_instance.settings.registry_path


@pytest.fixture
def registry_with_current(tmp_path, registry_template) -> Registry:
    """A fresh copy of that registry at tmp_path / "models" (the registry_path of settings
    rooted at tmp_path), so that a test may promote or save freely."""
    root = tmp_path / "models"
    shutil.copytree(registry_template, root)
    return Registry(root)
