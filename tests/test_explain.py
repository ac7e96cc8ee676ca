"""Explanations: the forecast's linear predictor term by term, held to the served forecast."""

import json

import numpy as np
import pytest
from fixtures_api import cli_on
from scipy.special import expit

from forecasting.model.arithmetic import TERMS, integrate_clusters
from forecasting.serving.explain import decompose, explain
from forecasting.serving.forecasts import CodedTrigger, Scenario

SCENARIO = {"trigger_type": "disclosure_incident", "severity": 3, "alignment": 1}
TRIGGER = CodedTrigger("2017-oval-office-disclosure", Scenario("disclosure_incident", 3, 1), (
    {"partner": "ISR", "intel_type": "sigint", "level": 2},
    {"partner": "ISR", "intel_type": "sources", "level": 3},
    {"partner": "GBR", "intel_type": "humint", "level": 0},
))


@pytest.fixture(scope="module")
def new_trigger(fitted_engine):
    return decompose(fitted_engine, "ISR", "humint", SCENARIO)


@pytest.fixture(scope="module")
def live(fitted_engine):
    return decompose(fitted_engine, "ISR", "humint", trigger=TRIGGER)


@pytest.mark.parametrize("case", ["new_trigger", "live"])
def test_the_model_terms_add_up_to_the_forecasts_linear_predictor_draw_by_draw(case, request):
    d = request.getfixturevalue(case)
    assert list(d["terms"])[:len(TERMS)] == list(TERMS)
    total = np.sum([d["terms"][name] for name in TERMS], axis=0)
    # the served eta is float32 (pt_eff as stored plus the scenario table)
    assert np.allclose(total, d["eta"], rtol=0, atol=2e-5)
    # every term varies across draws: none is a placeholder that makes the sum trivial
    assert all(np.std(d["terms"][name]) > 0 for name in TERMS)
    # with the cluster terms, the sum is the effective linear predictor, whose P(any) is the
    # served per-draw probability
    every = np.sum(list(d["terms"].values()), axis=0)
    assert np.allclose(every, d["effective"], atol=2e-5)
    assert np.allclose(expit(d["effective"] - d["cutpoint"]), d["any_restriction"], rtol=1e-5,
                       atol=1e-7)


def test_the_explanation_reports_the_served_probability(fitted_engine):
    served = fitted_engine.forecast("ISR", "humint", **SCENARIO)
    explanation = explain(fitted_engine, "ISR", "humint", SCENARIO)
    assert explanation["any_restriction"] == served["any_restriction"]
    assert explanation["check"]["max_abs_difference"] < 2e-5
    assert [t["term"] for t in explanation["terms"]] == [*TERMS, "event", "reaction"]
    live_served = fitted_engine.conditioned("ISR", "humint", TRIGGER)
    live_explained = explain(fitted_engine, "ISR", "humint", trigger=TRIGGER)
    assert live_explained["any_restriction"] == live_served["any_restriction"]
    assert live_explained["draws"] == live_served["draws_used"]
    assert {t["treatment"] for t in live_explained["terms"] if t["kind"] == "cluster"} == {
        "conditioned on"}


def test_a_terms_shift_is_the_forecast_minus_the_forecast_with_the_term_at_zero(
        fitted_engine, new_trigger):
    draws = fitted_engine.cell_draws("ISR", "humint", Scenario(**SCENARIO))
    for name in ("severity", "partner_type"):
        without = (new_trigger["eta"] - new_trigger["terms"][name]).astype(np.float32)
        probs = integrate_clusters(without, draws["cutpoints"], draws["cluster_sd"], axis=-2)
        expected = new_trigger["any_restriction"] - (1 - probs[0])
        assert np.allclose(new_trigger["shifts"][name], expected, atol=1e-6)
    # a higher severity raises the severity term exactly by the slope, draw by draw
    grave = decompose(fitted_engine, "ISR", "humint", SCENARIO | {"severity": 2})
    slope = np.asarray(fitted_engine.posterior["beta_severity"]).reshape(-1)
    assert np.allclose(new_trigger["terms"]["severity"] - grave["terms"]["severity"], slope)


def test_integrating_out_the_event_effect_moves_a_rare_outcome_towards_even(new_trigger):
    # P(any) is small at eta: a wide Normal on the log-odds scale raises its average
    assert np.median(expit(new_trigger["eta"] - new_trigger["cutpoint"])) < 0.5
    assert np.mean(new_trigger["terms"]["event"]) > 0
    assert np.mean(new_trigger["shifts"]["event"]) > 0


def test_a_partner_without_episodes_is_said_to_be_drawn_from_its_bloc(fitted_engine):
    unseen = [p for p in fitted_engine.partners if p not in fitted_engine.observed_partners]
    assert unseen, "the session's data leaves partners uncoded"
    terms = {t["term"]: t for t in explain(fitted_engine, unseen[0], "humint")["terms"]}
    bloc = fitted_engine.codebook.bloc_of(unseen[0])
    assert f"drawn from its bloc ({bloc})" in terms["partner"]["note"]
    assert "note" in terms["partner_type"] and "note" not in terms["intel_type"]
    seen = {t["term"]: t for t in explain(fitted_engine, "ISR", "humint")["terms"]}
    assert "note" not in seen["partner"]


def test_the_api_explains_a_forecast_and_lists_its_evidence(client, served_model):
    url = ("/v1/forecasts?partner=ISR&intel_type=humint&trigger_type=disclosure_incident"
           "&severity=3&alignment=1")
    plain = client.get(url).get_json()
    r = client.get(url + "&explain=true&evidence_limit=2")
    assert r.status_code == 200
    body = r.get_json()
    assert body["any_restriction"] == plain["any_restriction"]
    explanation = body["explanation"]
    assert explanation["scale"] == "log-odds"
    assert explanation["any_restriction"] == plain["any_restriction"]
    term = explanation["terms"][1]
    assert term["term"] == "partner" and term["label"] == "ISR within middle_east"
    assert set(term["log_odds"]) == set(term["any_restriction_shift"]) == {
        "mean", "median", "ci50", "ci90"}
    evidence = body["evidence"]
    # the instance's store holds 8 ISR episodes of one trigger, humint at level 0
    assert evidence["direct"] is True
    assert evidence["counts"] == {"same_partner_and_type": 1, "same_partner_other_types": 7,
                                  "same_bloc_and_type": 0}
    assert evidence["restricted"]["same_partner_other_types"] == 1
    assert len(evidence["episodes"]) == 3  # 1 + at most 2 of the partner's other types
    assert evidence["episodes"][0]["relation"] == "same partner and type"
    assert "X-Store-Revision" in r.headers
    png = client.get(url.replace("/v1/forecasts?", "/v1/forecasts/explain.png?"))
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_live_forecast_is_explained_with_its_clusters_conditioned_on(client, served_model):
    url = "/v1/forecasts?partner=SAU&intel_type=cyber&trigger_id=2017-oval-office-disclosure"
    r = client.get(url + "&explain=1")
    assert r.status_code == 200
    body = r.get_json()
    plain = client.get(url).get_json()
    # the explained answer is the live forecast itself, its levels computed once
    assert {k: body[k] for k in plain} == plain
    assert body["explanation"]["any_restriction"] == plain["any_restriction"]
    clusters = [t for t in body["explanation"]["terms"] if t["kind"] == "cluster"]
    assert [t["treatment"] for t in clusters] == ["conditioned on", "conditioned on"]
    assert body["evidence"]["direct"] is False
    assert body["evidence"]["note"].startswith("No direct evidence")


def test_the_cli_explains_with_the_apis_json_and_prints_terms_and_evidence(
        client, served_model, api_settings):
    api = client.get("/v1/forecasts?partner=ISR&intel_type=humint&explain=true").get_json()
    forecast = cli_on(api_settings)
    as_json = forecast("query", "ISR", "humint", "--explain", "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == api
    shown = forecast("query", "SAU", "cyber", "--explain")
    assert shown.exit_code == 0, shown.output
    assert "SAU within middle_east" in shown.output
    assert "a new trigger's event effect, integrated out" in shown.output
    assert "no direct evidence" in shown.output


def test_bad_explain_requests_name_the_field(client, served_model, api_settings):
    unknown = client.get("/v1/forecasts?partner=XXX&intel_type=humint&explain=true")
    assert unknown.status_code == 400 and "partner" in unknown.get_json()["detail"]
    too_many = client.get("/v1/forecasts?partner=ISR&intel_type=humint&explain=true"
                          "&evidence_limit=101")
    assert too_many.status_code == 400 and "evidence_limit" in json.dumps(too_many.get_json())
    refused = cli_on(api_settings)("query", "ISR", "humint", "--explain", "--horizon", 6)
    assert refused.exit_code != 0 and "--explain" in refused.output


def test_an_explained_answer_is_revalidated_against_the_store(client, served_model):
    url = "/v1/forecasts?partner=ISR&intel_type=humint&explain=true"
    first = client.get(url)
    assert client.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304


def test_the_predictor_is_the_sum_of_the_terms_for_any_parameters(codebook):
    from forecasting.model.arithmetic import (
        cell_terms,
        linear_predictor,
        partner_type_effects,
        partner_type_terms,
        scenario_terms,
    )

    rng = np.random.default_rng(4)
    n_p, n_b, n_t, n_tt = 6, 3, 4, 5
    bloc_of = np.array([0, 0, 1, 1, 2, 2])
    draws = {"bloc_eff": rng.normal(size=(7, n_b)), "partner_dev": rng.normal(size=(7, n_p)),
             "type_eff": rng.normal(size=(7, n_t)), "bloc_type_eff": rng.normal(size=(7, n_b, n_t)),
             "pt_dev": rng.normal(size=(7, n_p, n_t))}
    slopes = {"trigger_eff": rng.normal(size=(7, n_tt)), "beta_severity": rng.normal(size=7),
              "beta_alignment": rng.normal(size=7)}
    _, pt_eff = partner_type_effects(*draws.values(), bloc_of)
    terms = partner_type_terms(*draws.values(), bloc_of) | scenario_terms(*slopes.values())
    for p, t, tt, s, a in [(0, 0, 0, 0, 0), (3, 2, 4, 3, 1), (5, 3, 2, 1, 3)]:
        eta = linear_predictor({"pt_eff": pt_eff, **slopes}, p, t, tt, s, a)
        parts = cell_terms(terms, p, t, tt, s, a)
        assert list(parts) == list(TERMS)
        assert np.allclose(sum(parts.values()), eta, rtol=0, atol=1e-12)
        assert np.allclose(parts["bloc"], draws["bloc_eff"][:, bloc_of[p]])
        assert np.allclose(parts["severity"], slopes["beta_severity"] * (s - 1.5))
