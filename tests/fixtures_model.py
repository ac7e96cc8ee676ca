"""Session-scoped fixtures for the model, priors and fitting tests.

One seed-like simulated data set and one small real fit (nutpie, compiled once per session
and reused through `with_data`) are shared by every test that needs them. Imported by
tests/conftest.py with `from fixtures_model import *`; needs conftest's `codebook` fixture.
"""

from __future__ import annotations

import pytest

from forecasting.settings import DEFAULT_PRIORS_DIR, GateThresholds, SamplerSettings

__all__ = [
    "default_priors",
    "seed_like_data",
    "seed_like_cells",
    "small_sampler",
    "small_fit",
]

# Small but healthy enough to diagnose: 4 chains as served fits have, few draws for speed.
SMALL_SAMPLER = SamplerSettings(sampler="nutpie", chains=4, draws=300, tune=300,
                                target_accept=0.9, seed=11)


@pytest.fixture(scope="session")
def default_priors():
    from forecasting.model.priors import load_priors

    return load_priors(DEFAULT_PRIORS_DIR / "default.toml")


@pytest.fixture(scope="session")
def seed_like_data(codebook):
    """(episodes, true parameters): 800 rows, 21 of 23 partners observed, ~80% level 0."""
    from forecasting.evaluation.simulate import seed_like

    return seed_like(codebook, n=800, seed=5)


@pytest.fixture(scope="session")
def seed_like_cells(seed_like_data, codebook):
    from forecasting.domain.cells import aggregate

    return aggregate(seed_like_data[0], codebook)


@pytest.fixture(scope="session")
def small_sampler():
    return SMALL_SAMPLER


@pytest.fixture(scope="session")
def small_fit(seed_like_data, codebook, default_priors, small_sampler):
    """A real, small fit of the seed-like data (FitResult), shared by the session."""
    from forecasting.model.fitting import fit_and_diagnose

    return fit_and_diagnose(seed_like_data[0], codebook, default_priors, small_sampler,
                            GateThresholds())
