from fixtures_api import auth
from fixtures_registry import FAILED_REASON

from api import create_app
from forecasting.model.priors import load_priors
from forecasting.settings import DEFAULT_PRIORS_DIR, load_settings


def test_models_list_shows_verdicts_and_the_current_version(client, served_model, failed_model):
    body = client.get("/v1/models").get_json()
    assert body["current"] == served_model.version
    verdicts = {m["version"]: (m["verdict"], m["current"]) for m in body["models"]}
    assert verdicts[served_model.version] == ("pass", True)
    assert verdicts[failed_model.version] == ("fail", False)


def test_current_is_an_alias_and_unknown_versions_are_404(client, served_model):
    current = client.get("/v1/models/current").get_json()
    assert current["version"] == served_model.version
    # fitted with the shipped priors, and says so
    default = load_priors(DEFAULT_PRIORS_DIR / "default.toml")
    assert current["metadata"]["priors_hash"] == default.content_hash
    missing = client.get("/v1/models/abc123/diagnostics")
    assert missing.status_code == 404 and "unknown model version 'abc123'" in missing.get_json()["detail"]


def test_diagnostics_carry_the_verdict_and_reasons(client, failed_model):
    body = client.get(f"/v1/models/{failed_model.version}/diagnostics").get_json()
    assert body["verdict"] == "fail" and body["reasons"] == [FAILED_REASON]
    assert "max_rhat" in body["diagnostics"]


def test_plots_are_png_and_unknown_plots_are_404(client, served_model):
    r = client.get("/v1/models/current/plots/forest.png")
    assert r.status_code == 200 and r.mimetype == "image/png"
    assert r.data.startswith(b"\x89PNG")
    assert client.get("/v1/models/current/plots/forest.png").data == r.data  # cached on disk
    unknown = client.get("/v1/models/current/plots/pie.png")
    assert unknown.status_code == 404 and "unknown plot 'pie'" in unknown.get_json()["detail"]


def test_closed_reads_need_any_valid_token(api_settings, tokens, served_model):
    settings = load_settings({"FORECAST_INSTANCE": str(api_settings.instance_path),
                              "FORECAST_OPEN_READS": "0"})
    client = create_app({"SETTINGS": settings}).test_client()
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers=auth(tokens["reader"])).status_code == 200
    assert client.get("/health").status_code == 200


def test_openapi_documents_every_contract_route_and_docs_are_served(client):
    spec = client.get("/openapi.json").get_json()
    paths = set(spec["paths"])
    for route in ("/health", "/ready", "/v1/vocab", "/v1/forecasts", "/v1/forecasts/batch",
                  "/v1/forecasts/grid", "/v1/forecasts/compare", "/v1/models",
                  "/v1/models/{version}", "/v1/models/{version}/diagnostics",
                  "/v1/models/{version}/plots/{name}.png", "/v1/models/{version}/promote",
                  "/v1/episodes", "/v1/episodes/{trigger_id}/{partner}/{intel_type}"):
        assert route in paths, route
    assert client.get("/docs").status_code in (200, 302)
    assert b"swagger-ui" in client.get("/swagger").data


def test_vocab_lists_partners_with_their_bloc(client):
    body = client.get("/v1/vocab").get_json()
    partners = {p["code"]: p["bloc"] for p in body["partners"]}
    assert partners["ISR"] == "middle_east" and partners["NZL"] == "five_eyes"
    assert [lvl["name"] for lvl in body["levels"]] == ["none", "selective", "reduced", "suspended"]
