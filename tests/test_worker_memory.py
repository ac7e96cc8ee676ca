"""The refit worker's per-process caches stay bounded however many model structures it meets."""

import numpy as np
import pymc as pm
import pytest
import xarray as xr

from forecasting.model import prior_predictive, sampling

nutpie = pytest.importorskip("nutpie")


def _model(priors_hash: str) -> pm.Model:
    """A model whose structure key differs by `priors_hash`, as after each new prior set."""
    model = pm.Model()
    model.forecast_config = {"priors_hash": priors_hash}
    return model


@pytest.fixture
def restore_caches():
    """The session's compiled models and prior draws, put back after the test."""
    saved = {name: dict(getattr(sampling, name)) for name in ("_COMPILED", "_PRIORS")}
    yield
    for name, entries in saved.items():
        cache = getattr(sampling, name)
        cache.clear()
        cache.update(entries)


def test_compiled_models_are_kept_for_the_latest_structures_only(monkeypatch, restore_caches):
    monkeypatch.setattr(nutpie, "compile_pymc_model", lambda model, var_names=None: object())
    models = [_model(f"priors-{i}") for i in range(sampling.COMPILED_KEPT + 5)]
    for model in models:
        sampling.compile_nutpie(model)
    assert len(sampling._COMPILED) == sampling.COMPILED_KEPT
    latest = sampling.structure_key(models[-1])
    assert latest in sampling._COMPILED
    assert sampling.compile_nutpie(models[-1]) is sampling._COMPILED[latest]  # still reused


def test_prior_draws_are_kept_for_the_latest_structures_only(monkeypatch, restore_caches):
    draws = xr.Dataset({"sigma": (("chain", "draw"), np.ones((1, 3)))})
    monkeypatch.setattr(prior_predictive, "sample_prior", lambda model, n, seed: draws)
    for i in range(sampling.PRIORS_KEPT + 5):
        sampling.prior_draws(_model(f"priors-{i}"), 3, seed=i)
    assert len(sampling._PRIORS) == sampling.PRIORS_KEPT
