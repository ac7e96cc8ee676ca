"""The evaluation blueprint: stored reports as JSON, plots as PNG, sensitivity, 404s.

The lead registers the blueprint in api/__init__.py; until then these tests register it on
a fresh app themselves (before its first request, as Flask requires).
"""

from __future__ import annotations

import pytest

from api import create_app
from forecasting.evaluation import reports

PNG = b"\x89PNG\r\n\x1a\nfake"


@pytest.fixture
def eval_app(api_settings):
    app = create_app({"SETTINGS": api_settings, "TESTING": True})
    if "evaluation" not in app.blueprints:
        from api.routes import evaluation

        app.register_api(evaluation.bp)
    yield app
    app.extensions["forecasting"].database.dispose()


@pytest.fixture
def eval_client(eval_app):
    return eval_app.test_client()


def test_no_results_yet_is_a_404_problem(eval_client, served_model):
    response = eval_client.get("/v1/models/current/evaluation")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert "forecast backtest" in response.get_json()["detail"]


def test_stored_results_are_served_for_current_and_by_version(eval_client, served_model,
                                                              api_settings):
    reports.save_result(api_settings, served_model.version, "backtest",
                        {"model": "hierarchical", "comparisons": {}}, {"reliability": PNG})
    for version in ("current", served_model.version):
        response = eval_client.get(f"/v1/models/{version}/evaluation")
        assert response.status_code == 200
        body = response.get_json()
        assert body["version"] == served_model.version
        assert body["backtest"]["model"] == "hierarchical"
        assert body["plots"] == ["reliability"]
        assert "sbc" not in body
    png = eval_client.get("/v1/models/current/evaluation/plots/reliability.png")
    assert png.status_code == 200 and png.mimetype == "image/png" and png.data == PNG
    assert png.headers["X-Model-Version"] == served_model.version


@pytest.mark.parametrize(("url", "status"), [
    ("/v1/models/current/evaluation/plots/trace.png", 404),  # not an evaluation plot
    ("/v1/models/current/evaluation/plots/sbc.png", 404),  # not computed yet
    ("/v1/models/0000000000000000/evaluation", 404),  # unknown version
    ("/v1/models/0000000000000000/sensitivity", 404),
])
def test_unknown_plots_and_versions_are_404_problems(eval_client, served_model, url, status):
    response = eval_client.get(url)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"


def test_no_current_model_is_a_503(eval_client):
    assert eval_client.get("/v1/models/current/evaluation").status_code == 503


def test_sensitivity_of_a_fit_without_log_prior_is_a_409(eval_client, second_model):
    response = eval_client.get(f"/v1/models/{second_model.version}/sensitivity")
    assert response.status_code == 409
    assert "log_prior" in response.get_json()["detail"]


def test_sensitivity_is_computed_on_demand_then_cached(eval_client, api_settings, served_model):
    mv = served_model
    response = eval_client.get(f"/v1/models/{mv.version}/sensitivity")
    assert response.status_code == 200
    body = response.get_json()
    assert body["version"] == mv.version and "pt_eff" in body["groups"]
    cached = reports.evaluation_dir(api_settings, mv.version) / "sensitivity.json"
    assert cached.is_file()
    again = eval_client.get(f"/v1/models/{mv.version}/sensitivity").get_json()
    assert again["created_at"] == body["created_at"]
    # and it now shows up in the version's evaluation report
    assert "sensitivity" in eval_client.get(f"/v1/models/{mv.version}/evaluation").get_json()


def test_the_routes_are_in_the_openapi_document(eval_client):
    paths = eval_client.get("/openapi.json").get_json()["paths"]
    assert "/v1/models/{version}/evaluation" in paths
    assert "/v1/models/{version}/evaluation/plots/{name}.png" in paths
    assert "/v1/models/{version}/sensitivity" in paths
