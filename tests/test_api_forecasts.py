import json
import threading

import pytest
from fixtures_api import TYPES, auth, cli_on
from helpers import episode_row

from forecasting.registry import Registry

CONTRACT_KEYS = {"partner", "intel_type", "scenario", "any_restriction", "levels", "model"}
SUMMARY_KEYS = {"mean", "median", "ci50", "ci90"}


def test_one_forecast_has_the_contract_shape_and_its_model_stamp(client, served_model):
    r = client.get("/v1/forecasts?partner=ISR&intel_type=humint&trigger_type=disclosure_incident"
                   "&severity=3&alignment=2")
    assert r.status_code == 200
    body = r.get_json()
    assert set(body) == CONTRACT_KEYS
    assert body["scenario"] == {"trigger_type": "disclosure_incident", "severity": 3,
                                "alignment": 2}
    assert set(body["any_restriction"]) == SUMMARY_KEYS
    assert set(body["levels"]) == {"0", "1", "2", "3"}
    lo, hi = body["any_restriction"]["ci90"]
    assert 0 <= lo <= body["any_restriction"]["median"] <= hi <= 1
    assert body["model"]["version"] == served_model.version
    assert body["model"]["verdict"] == "pass"
    assert body["model"]["episodes"] == served_model.episodes
    assert r.headers["X-Model-Version"] == served_model.version


def test_scenario_defaults_are_stated_in_the_answer(client, served_model):
    body = client.get("/v1/forecasts?partner=GBR&intel_type=sigint").get_json()
    assert body["scenario"] == {"trigger_type": "disclosure_incident", "severity": 2,
                                "alignment": 1}


@pytest.mark.parametrize(("query", "status", "needle"), [
    # an unknown code is a bad request, as in every other route (services.errors)
    ("partner=XXX&intel_type=humint", 400, "partner: unknown code 'XXX'"),
    ("partner=ISR&intel_type=gossip", 400, "intel_type: unknown code 'gossip'"),
    ("partner=ISR&intel_type=humint&trigger_type=coup", 400, "trigger_type: unknown code"),
    ("partner=ISR&intel_type=humint&severity=7", 400, "severity"),
    ("partner=ISR&intel_type=humint&severity=high", 400, "severity"),
    ("partner=ISR", 400, "intel_type"),
    ("partner=ISR&intel_type=humint&colour=red", 400, "colour"),
])
def test_bad_queries_get_a_problem_naming_the_field(client, served_model, query, status, needle):
    r = client.get(f"/v1/forecasts?{query}")
    assert r.status_code == status
    assert r.mimetype == "application/problem+json"
    assert needle in r.get_data(as_text=True)


def test_without_a_current_model_forecasts_are_503_and_not_ready(client):
    assert client.get("/v1/forecasts?partner=ISR&intel_type=humint").status_code == 503
    assert client.get("/ready").status_code == 503
    assert client.get("/health").status_code == 200


def test_ready_names_the_loaded_version(client, served_model):
    assert client.get("/ready").get_json() == {"status": "ready", "model": served_model.version}


def test_etag_revalidation_answers_304_until_the_version_changes(client, served_model,
                                                                  second_model):
    url = "/v1/forecasts?partner=ISR&intel_type=humint"
    first = client.get(url)
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache"
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    Registry(client.application.extensions["forecasting"].settings.registry_path).promote(
        second_model.version)
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 200
    assert again.get_json()["model"]["version"] == second_model.version


def test_batch_answers_every_query_in_order(client, served_model):
    queries = [{"partner": "ISR", "intel_type": "humint", "severity": 3},
               {"partner": "GBR", "intel_type": "sigint"}]
    r = client.post("/v1/forecasts/batch", json={"queries": queries})
    assert r.status_code == 200
    body = r.get_json()
    assert body["count"] == 2
    assert [(f["partner"], f["intel_type"]) for f in body["forecasts"]] == [
        ("ISR", "humint"), ("GBR", "sigint")]
    single = client.get("/v1/forecasts?partner=ISR&intel_type=humint&severity=3").get_json()
    assert body["forecasts"][0]["any_restriction"] == single["any_restriction"]


def test_batch_rejects_a_bad_query_naming_its_index(client, served_model):
    r = client.post("/v1/forecasts/batch", json={"queries": [
        {"partner": "ISR", "intel_type": "humint"}, {"partner": "ZZZ", "intel_type": "cyber"}]})
    assert r.status_code == 400
    assert "queries[1].partner" in r.get_json()["detail"]
    assert client.post("/v1/forecasts/batch", json={"queries": []}).status_code == 400
    # a step of a scale is a number: true/false are not read as 1/0
    r = client.post("/v1/forecasts/batch", json={"queries": [
        {"partner": "ISR", "intel_type": "humint", "alignment": False}]})
    assert r.status_code == 400 and "queries[0].alignment" in r.get_json()["detail"]


def test_grid_covers_every_partner_and_type_sorted_by_risk(client, served_model, codebook):
    body = client.get("/v1/forecasts/grid?severity=3").get_json()
    cells = {(f["partner"], f["intel_type"]) for f in body["forecasts"]}
    assert len(cells) == len(codebook.partners) * len(codebook.intel_types)
    means = [f["any_restriction"]["mean"] for f in body["forecasts"]]
    assert means == sorted(means, reverse=True)
    top = client.get("/v1/forecasts/grid?severity=3&limit=5&sort=risk").get_json()
    assert top["forecasts"] == body["forecasts"][:5]


def test_compare_gives_the_difference_with_its_own_interval(client, served_model):
    body = client.get("/v1/forecasts/compare?partner=ISR&intel_type=humint,sigint"
                      "&severity_a=0&severity_b=3").get_json()
    assert [c["intel_type"] for c in body["comparisons"]] == ["humint", "sigint"]
    c = body["comparisons"][0]
    assert c["a"]["scenario"]["severity"] == 0 and c["b"]["scenario"]["severity"] == 3
    d = c["difference"]
    assert d["ci90"][0] <= d["median"] <= d["ci90"][1]
    assert 0 <= d["prob_positive"] <= 1
    assert d["mean"] == pytest.approx(c["b"]["any_restriction"]["mean"]
                                      - c["a"]["any_restriction"]["mean"], abs=2e-4)


def test_a_promoted_version_is_served_without_restart_or_failed_requests(
        app, served_model, second_model):
    registry = Registry(app.extensions["forecasting"].settings.registry_path)
    seen, failures = set(), []
    stop = threading.Event()

    def hammer():
        client = app.test_client()
        while not stop.is_set():
            r = client.get("/v1/forecasts?partner=ISR&intel_type=humint")
            if r.status_code != 200:
                failures.append(r.status_code)
            else:
                seen.add(r.get_json()["model"]["version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for version in (second_model.version, served_model.version, second_model.version):
            registry.promote(version)
            threading.Event().wait(0.3)
        # on a loaded machine loading a version can outlast the waits: until the last
        # promotion is served (a bounded wait, not a timing assertion)
        for _ in range(600):
            if second_model.version in seen or failures:
                break
            threading.Event().wait(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert seen == {served_model.version, second_model.version}


def test_promotion_over_http_needs_a_modeler_and_refuses_failed_versions(
        client, tokens, served_model, second_model, failed_model):
    url = f"/v1/models/{second_model.version}/promote"
    assert client.post(url).status_code == 401
    assert client.post(url, headers=auth(tokens["coder"])).status_code == 403
    r = client.post(url, headers=auth(tokens["modeler"]))
    assert r.status_code == 200 and r.get_json()["current"] is True
    assert client.get("/v1/models/current").get_json()["version"] == second_model.version
    refused = client.post(f"/v1/models/{failed_model.version}/promote",
                          headers=auth(tokens["admin"]))
    assert refused.status_code == 409
    rollback = client.post(f"/v1/models/{served_model.version}/promote",
                           headers=auth(tokens["modeler"]))
    assert rollback.status_code == 200
    actions = [e["action"] for e in client.application.extensions["forecasting"]
               .database.audit_entries()]
    assert actions.count("model:promote") == 2


# --- live-event forecasts (trigger_id) -------------------------------------------------------
# The template instance codes one trigger: ISR's eight types after the 2017 disclosure
# (severity 3, alignment 1), `sources` at level 1 and the rest at 0 (fixtures_api).
TRIGGER = "2017-oval-office-disclosure"
LIVE_URL = f"/v1/forecasts?partner=ISR&intel_type=humint&trigger_id={TRIGGER}"


def test_a_live_forecast_conditions_on_the_triggers_other_episodes(client, served_model):
    r = client.get(LIVE_URL)
    assert r.status_code == 200
    body = r.get_json()
    assert set(body) == CONTRACT_KEYS | {"trigger_id", "conditioned_on", "observed_level",
                                         "draws_used"}
    assert body["trigger_id"] == TRIGGER
    # the trigger fixes the scenario: its coded type, severity and alignment
    assert body["scenario"] == {"trigger_type": "disclosure_incident", "severity": 3,
                                "alignment": 1}
    # every coded episode of the trigger but ISR humint's own, which is reported apart
    assert [(e["partner"], e["intel_type"], e["level"]) for e in body["conditioned_on"]] == [
        ("ISR", t, int(t == "sources")) for t in TYPES if t != "humint"]
    assert body["observed_level"] == 0
    assert set(body["conditioned_on"][0]) == {"partner", "intel_type", "level", "trigger_date",
                                              "sources", "confidence"}
    assert body["conditioned_on"][0]["sources"] == ["The Washington Post, 2017-05-15",
                                                    "The New York Times, 2017-05-16"]
    assert body["model"]["version"] == served_model.version
    other = client.get(f"/v1/forecasts?partner=GBR&intel_type=sigint&trigger_id={TRIGGER}")
    assert other.get_json()["observed_level"] is None
    assert len(other.get_json()["conditioned_on"]) == len(TYPES)


def test_a_live_forecast_is_revalidated_against_the_episodes_coded_since(client, served_model,
                                                                        tokens):
    first = client.get(LIVE_URL)
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache"
    assert first.headers["X-Model-Version"] == served_model.version
    # not the version-only tag of a new-trigger forecast: the store's revision is in it
    assert f"-r{first.headers['X-Store-Revision']}-" in etag
    assert client.get(LIVE_URL, headers={"If-None-Match": etag}).status_code == 304
    coded = client.post("/v1/episodes", headers=auth(tokens["coder"]), json=episode_row(
        partner="SAU", intel_type="sigint", level=3))
    assert coded.status_code in (200, 201), coded.get_json()
    again = client.get(LIVE_URL, headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.headers["ETag"] != etag
    assert ("SAU", "sigint", 3) in [(e["partner"], e["intel_type"], e["level"])
                                    for e in again.get_json()["conditioned_on"]]


def test_the_api_and_the_cli_give_the_same_live_forecast(client, served_model, api_settings):
    api = client.get(f"/v1/forecasts?partner=SAU&intel_type=cyber&trigger_id={TRIGGER}")
    cli = cli_on(api_settings)("query", "SAU", "cyber", "--trigger-id", TRIGGER, "--json")
    assert cli.exit_code == 0, cli.output
    served, computed = api.get_json(), json.loads(cli.output)
    # both faces answer from at most FORECAST_LIMIT_MAX_DRAWS draws (the fit's 2000, thinned)
    assert served["model"]["draws_used"] == computed["model"]["draws_used"] == 1000
    assert served == computed


def test_an_unknown_trigger_is_a_404_naming_trigger_id(client, served_model):
    r = client.get("/v1/forecasts?partner=ISR&intel_type=humint&trigger_id=no-such-trigger")
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    body = r.get_json()
    assert body["title"] == "Unknown trigger"
    assert body["errors"][0]["field"] == "trigger_id" and "no-such-trigger" in body["detail"]


@pytest.mark.parametrize("given", ["severity=3", "trigger_type=disclosure_incident",
                                   "alignment=1"])
def test_a_scenario_with_a_trigger_id_is_a_400_naming_the_field(client, served_model, given):
    r = client.get(f"{LIVE_URL}&{given}")
    assert r.status_code == 400 and r.mimetype == "application/problem+json"
    field = given.split("=")[0]
    assert r.get_json()["errors"][0]["field"] == field
    assert r.get_json()["detail"].startswith(f"{field}: ")


def test_the_openapi_document_describes_the_live_answer(client):
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/v1/forecasts"]["get"]
    assert "trigger_id" in [p["name"] for p in operation["parameters"]]
    live = spec["components"]["schemas"]["LiveForecast"]
    assert {"trigger_id", "conditioned_on", "observed_level", "draws_used"} <= set(live["required"])
    episode = spec["components"]["schemas"]["ConditionedEpisode"]
    assert set(episode["properties"]) == {"partner", "intel_type", "level", "trigger_date",
                                          "sources", "confidence"}


# --- the live grid (GET /v1/forecasts/grid?trigger_id=) ---------------------------------------
GRID_URL = f"/v1/forecasts/grid?trigger_id={TRIGGER}&sort=partner"


def test_the_live_grid_answers_every_cell_as_the_live_forecast_does(client, served_model,
                                                                    codebook):
    r = client.get(GRID_URL)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["trigger_id"] == TRIGGER and body["count"] == len(body["forecasts"])
    assert body["scenario"] == {"trigger_type": "disclosure_incident", "severity": 3,
                                "alignment": 1}
    assert body["store_revision"] == int(r.headers["X-Store-Revision"])
    assert [(e["partner"], e["intel_type"], e["level"]) for e in body["conditioned_on"]] == [
        ("ISR", t, int(t == "sources")) for t in TYPES]
    cells = {(f["partner"], f["intel_type"]): f for f in body["forecasts"]}
    assert len(cells) == len(codebook.partners) * len(codebook.intel_types)
    for partner, intel_type in [("ISR", "humint"), ("ISR", "sources"), ("GBR", "sigint"),
                                ("SAU", "cyber")]:
        one = client.get(f"/v1/forecasts?partner={partner}&intel_type={intel_type}"
                         f"&trigger_id={TRIGGER}").get_json()
        cell = cells[(partner, intel_type)]
        assert {k: cell[k] for k in one if k in cell} == {k: one[k] for k in cell if k in one}
        assert cell["observed_level"] == one["observed_level"]
    assert body["draws_used"] == one["draws_used"]
    assert cells[("ISR", "sources")]["observed_level"] == 1
    assert cells[("GBR", "sigint")]["observed_level"] is None
    top = client.get(f"/v1/forecasts/grid?trigger_id={TRIGGER}&limit=3").get_json()
    means = [f["any_restriction"]["mean"] for f in top["forecasts"]]
    assert top["count"] == 3 and means == sorted(means, reverse=True)
    assert max(c["any_restriction"]["mean"] for c in cells.values()) == means[0]


def test_the_live_grid_is_recomputed_when_an_episode_is_coded(client, served_model, tokens):
    first = client.get(GRID_URL)
    etag = first.headers["ETag"]
    assert client.get(GRID_URL, headers={"If-None-Match": etag}).status_code == 304
    before = {(f["partner"], f["intel_type"]): f for f in first.get_json()["forecasts"]}
    coded = client.post("/v1/episodes", headers=auth(tokens["coder"]), json=episode_row(
        partner="SAU", intel_type="sigint", level=3))
    assert coded.status_code in (200, 201), coded.get_json()
    again = client.get(GRID_URL, headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.headers["ETag"] != etag
    after = {(f["partner"], f["intel_type"]): f for f in again.get_json()["forecasts"]}
    assert after[("SAU", "sigint")]["observed_level"] == 3
    # SAU's suspension raises SAU's other cells: not an answer kept from before it was coded
    assert after[("SAU", "cyber")]["any_restriction"]["mean"] > \
        before[("SAU", "cyber")]["any_restriction"]["mean"]


@pytest.mark.parametrize("query, status, field", [
    ("trigger_id=no-such-trigger", 404, "trigger_id"),
    (f"trigger_id={TRIGGER}&severity=3", 400, "severity"),
])
def test_a_bad_live_grid_query_is_a_problem_naming_the_field(client, served_model, query,
                                                             status, field):
    r = client.get(f"/v1/forecasts/grid?{query}")
    assert r.status_code == status and r.mimetype == "application/problem+json"
    assert r.get_json()["errors"][0]["field"] == field


def test_the_live_grid_is_computed_once_per_trigger_and_store_revision(client, served_model,
                                                                       monkeypatch):
    from forecasting.serving.forecasts import ForecastEngine

    computed = []
    original = ForecastEngine.conditioned_grid_stats

    def counting(self, trigger):
        computed.append(trigger.trigger_id)
        return original(self, trigger)

    monkeypatch.setattr(ForecastEngine, "conditioned_grid_stats", counting)
    by_partner = client.get(GRID_URL).get_json()
    by_risk = client.get(f"/v1/forecasts/grid?trigger_id={TRIGGER}").get_json()
    assert computed == [TRIGGER]  # another sort is sorted from the kept grid
    assert sorted(by_risk["forecasts"], key=lambda f: (f["partner"], f["intel_type"])) == \
        by_partner["forecasts"]
