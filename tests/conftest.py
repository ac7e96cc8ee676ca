"""Shared fixtures. Heavier fixture sets live in their own modules, imported here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Compiled models are cached across test runs (a cold compile costs ~40 s); set before
# anything imports pytensor.
os.environ.setdefault(
    "PYTENSOR_FLAGS",
    f"base_compiledir={Path(__file__).resolve().parent.parent / '.cache' / 'pytensor'}",
)

from fixtures_api import *  # noqa: E402,F401,F403
from fixtures_model import *  # noqa: E402,F401,F403
from fixtures_registry import *  # noqa: E402,F401,F403
from fixtures_store import *  # noqa: E402,F401,F403

from forecasting.domain.codebook import load_codebook  # noqa: E402
from forecasting.settings import DEFAULT_DATA_DIR  # noqa: E402


@pytest.fixture(scope="session")
def codebook():
    return load_codebook(DEFAULT_DATA_DIR / "codebook.toml")
