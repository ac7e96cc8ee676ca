"""The path every fit takes, end to end, on the session's real fit (fixtures_model):
episodes in the store -> fit_and_register (fit, gate, save, promote) -> registry ->
ForecastEngine.from_version -> the Flask app's /v1/forecasts."""

from __future__ import annotations

import shutil

import pytest

from api import create_app
from forecasting.registry import Registry
from forecasting.serving.forecasts import ForecastEngine
from forecasting.settings import load_settings

QUERIES = [
    {"partner": "ISR", "intel_type": "humint"},
    {"partner": "GBR", "intel_type": "sigint", "trigger_type": "legal_case", "severity": 0,
     "alignment": 3},
    {"partner": "PAK", "intel_type": "cyber", "trigger_type": "surveillance_revelation",
     "severity": 3, "alignment": 0},
]


@pytest.fixture
def served(fitted_instance, tmp_path):
    """The app on a copy of the fitted instance (its database and registry), as served."""
    shutil.copytree(fitted_instance.settings.instance_path, tmp_path / "instance")
    settings = load_settings({"FORECAST_INSTANCE": str(tmp_path / "instance")})
    app = create_app({"SETTINGS": settings, "TESTING": True})
    yield app.test_client(), Registry(settings.registry_path)
    app.extensions["forecasting"].database.dispose()


def test_the_fit_is_stored_current_and_served_as_the_engine_computes_it(served, fitted_instance,
                                                                       codebook):
    client, registry = served
    fit, version = fitted_instance.result, fitted_instance.version
    assert registry.current().version == version.version
    assert version.metadata["data_hash"] == fit.data_fingerprint
    # the API answers from at most FORECAST_LIMIT_MAX_DRAWS draws (default 1000 of the fit's 2000)
    engine = ForecastEngine.from_version(registry, version.version, codebook, max_draws=1000)
    # the same answers from the tree as the fit made it, before the registry saw it
    in_memory = ForecastEngine(fit.idata, version.metadata, codebook, max_draws=1000)
    for query in QUERIES:
        response = client.get("/v1/forecasts", query_string=query)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body == engine.forecast(**query) == in_memory.forecast(**query)
        levels = [body["levels"][k]["mean"] for k in ("0", "1", "2", "3")]
        assert all(0 <= p <= 1 for p in levels)
        assert sum(levels) == pytest.approx(1, abs=4 * 5e-5)  # four values rounded to 4 places
        assert body["any_restriction"]["mean"] == pytest.approx(1 - levels[0], abs=1e-4)
        assert body["model"] == {"version": version.version, "fitted_at": version.fitted_at,
                                 "episodes": fit.n_episodes, "verdict": fit.verdict.verdict,
                                 "draws_used": 1000}
        assert response.headers["X-Model-Version"] == version.version
    assert body["model"]["verdict"] == "pass" and body["model"]["episodes"] == 800
