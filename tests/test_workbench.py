"""The modeler's workbench, step by step: statements -> a prior file (CLI and API), two prior
sets compared on both scales, the set made active with a note, the history showing who, why,
the statements and the versions fitted with it; candidate fits and their leave-one-trigger-out
scores (slow)."""

from __future__ import annotations

import json
import shutil
import tomllib
from dataclasses import replace

import pytest
from click.testing import CliRunner
from fixtures_api import auth
from fixtures_model import SMALL_SAMPLER

from forecasting.cli import main
from forecasting.model.priors import PriorConfigError, load_priors
from forecasting.registry import Registry
from forecasting.services.workbench import CANDIDATE, compare_priors, prior_history, resolve
from forecasting.settings import DEFAULT_PRIORS_DIR, SamplerSettings, load_settings
from forecasting.store import connect

EXAMPLE = DEFAULT_PRIORS_DIR / "statements.example.toml"


@pytest.fixture(scope="module")
def workbench(tmp_path_factory):
    """An initialised instance and `forecast priors elicit` run once on the example
    statements: (invoke, settings, folder, result of the elicit command)."""
    folder = tmp_path_factory.mktemp("workbench")
    settings = load_settings({"FORECAST_INSTANCE": str(folder / "instance")})
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False,
                             env={"FORECAST_INSTANCE": str(settings.instance_path)})

    assert invoke("init").exit_code == 0
    elicited = invoke("priors", "elicit", EXAMPLE, "--out", folder / "elicited.toml",
                      "--png", folder / "statements.png")
    return invoke, settings, folder, elicited


def test_elicit_writes_a_prior_file_meeting_the_statements_with_plots(workbench):
    _, _, folder, result = workbench
    assert result.exit_code == 0, result.output
    for statement in ("five-eyes-grave-disclosure", "europe-partners-within-10x",
                      "types-within-20x"):
        assert statement in result.output
    assert "NO" not in result.output
    written = (folder / "elicited.toml").read_text(encoding="utf-8")
    meta = tomllib.loads(written)["meta"]
    assert meta["met"] is True and len(meta["statements"]) == 3
    assert load_priors(folder / "elicited.toml") != load_priors(DEFAULT_PRIORS_DIR /
                                                                "default.toml")
    for png in ("statements.png", "statements-check.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_statements_that_cannot_be_met_exit_1_and_write_nothing(workbench, tmp_path):
    invoke, *_ = workbench
    contradictory = tmp_path / "contradictory.toml"
    contradictory.write_text(
        '[[statements]]\nid = "close"\nquantity = "blocs_odds_ratio"\nbelow = 1.5\n'
        'probability = 0.9\n\n[[statements]]\nid = "far"\nquantity = "blocs_odds_ratio"\n'
        'above = 30.0\nprobability = 0.9\n', encoding="utf-8")
    out = tmp_path / "out.toml"
    result = invoke("priors", "elicit", contradictory, "--out", out)
    assert result.exit_code == 1 and not out.exists()
    assert "conflicting: close" in result.output and "nothing was written" in result.output


def test_a_malformed_statements_file_is_refused_naming_statement_and_field(workbench,
                                                                           tmp_path):
    invoke, *_ = workbench
    bad = tmp_path / "bad.toml"
    bad.write_text('[[statements]]\nid = "x"\nquantity = "any_restriction"\n'
                   'partner = "ATL"\ninterval = [0.1, 0.2]\nprobability = 0.9\n',
                   encoding="utf-8")
    result = invoke("priors", "elicit", bad)
    assert result.exit_code == 1
    assert "statements[0] (x).partner: unknown code 'ATL'" in result.output


def test_compare_shows_both_scales_and_the_same_set_shows_no_difference(workbench):
    invoke, settings, folder, _ = workbench
    database = connect(settings.database_url)
    try:
        doc = compare_priors(load_codebook(settings), database, settings,
                             str(folder / "elicited.toml"), "active", draws=500)
        same = compare_priors(load_codebook(settings), database, settings, "default", "active",
                              draws=500)
        with pytest.raises(PriorConfigError, match="unknown prior set 'nowhere.toml'"):
            resolve("nowhere.toml", database, settings)
    finally:
        database.dispose()
    changed = {p["parameter"] for p in doc["parameters"] if p["changed"]}
    assert {"cutpoints", "sigma_partner"} <= changed and "sigma_event" not in changed
    outcome = {row["quantity"]: row for row in doc["outcome"]}
    # the statements' effect, on the outcome scale: blocs closer together, severity narrower
    assert outcome["severity_odds_ratio"]["a"]["high"] < outcome["severity_odds_ratio"]["b"][
        "high"]
    assert doc["a"]["statements"][0]["id"] == "five-eyes-grave-disclosure"
    assert same["same_priors"] and not any(p["changed"] for p in same["parameters"])
    assert all(row["a"] == row["b"] for row in same["outcome"])
    shown = invoke("priors", "compare", folder / "elicited.toml", "default")
    assert shown.exit_code == 0 and "sigma_partner" in shown.output
    assert "odds ratio, most vs least guarded partner" in shown.output


def _copy(fitted_instance, folder):
    shutil.copytree(fitted_instance.settings.instance_path, folder)
    return replace(load_settings({"FORECAST_INSTANCE": str(folder)}),
                   sampler=fitted_instance.settings.sampler, gate=fitted_instance.settings.gate)


def load_codebook(settings):
    from forecasting.domain.codebook import load_codebook as load

    return load(settings.codebook_path)


def test_making_the_elicited_set_active_needs_a_note_and_the_history_keeps_the_statements(
        workbench):
    invoke, _, folder, _ = workbench
    refused = invoke("priors", "set", folder / "elicited.toml")
    assert refused.exit_code == 1 and "note: required" in refused.output
    applied = invoke("priors", "set", folder / "elicited.toml", "--note",
                     "the December review's judgments", "--actor", "dana")
    assert applied.exit_code == 0, applied.output
    [entry] = json.loads(invoke("priors", "history", "--json").output)
    assert entry["created_by"] == "dana" and entry["note"] == "the December review's judgments"
    assert [s["id"] for s in entry["statements"]] == [
        "five-eyes-grave-disclosure", "europe-partners-within-10x", "types-within-20x"]
    assert entry["elicitation"]["met"] is True and entry["versions"] == []
    table = invoke("priors", "history").output
    assert "five-eyes-grave-disclosure" in table and "dana" in table


# -- the API face ---------------------------------------------------------------------------------


def _statements():
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    return {"meta": {k: v for k, v in raw["meta"].items()}, "statements": raw["statements"]}


def test_a_reader_can_elicit_as_a_dry_run_and_nothing_is_stored(client, api_settings):
    r = client.post("/v1/priors/elicit", json=_statements())
    assert r.status_code == 200, r.get_json()
    doc = r.get_json()
    assert doc["met"] and [s["id"] for s in doc["statements"]] == [
        "five-eyes-grave-disclosure", "europe-partners-within-10x", "types-within-20x"]
    assert tomllib.loads(doc["prior_file"])["meta"]["statements"][0]["interval"] == [0.02, 0.2]
    assert "samples" not in doc["prior_predictive"]
    assert client.get("/v1/priors/history").get_json()["history"] == []


@pytest.mark.parametrize(("change", "field"), [
    ({"statements": [{"id": "x", "quantity": "any_restriction", "bloc": "atlantis",
                      "interval": [0.1, 0.2], "probability": 0.9}]}, "statements[0] (x).bloc"),
    ({"meta": {"base": "/etc/passwd"}}, "meta.base"),
])
def test_a_bad_statements_document_is_a_problem_naming_the_field(client, change, field):
    r = client.post("/v1/priors/elicit", json=_statements() | change)
    assert r.status_code == 400 and r.content_type == "application/problem+json"
    assert field in [e["field"] for e in r.get_json()["errors"]], r.get_json()


def test_compare_and_history_over_the_api(client, tokens):
    r = client.get("/v1/priors/compare?a=default&b=active")
    assert r.status_code == 200 and r.get_json()["same_priors"] is True
    assert r.get_json()["b"]["label"] == "active (default.toml)"  # no path of the server
    assert client.get("/v1/priors/compare?a=/etc/hosts").status_code == 400
    png = client.get("/v1/priors/compare.png?a=default")
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.data[:8] == b"\x89PNG\r\n\x1a\n"
    priors = load_priors(DEFAULT_PRIORS_DIR / "default.toml").replace(
        sigma_pt={"dist": "HalfNormal", "kwargs": {"sigma": 0.2}}).to_dict()
    assert client.put("/v1/priors", json={"priors": priors},
                      headers=auth(tokens["modeler"])).get_json()["errors"][0]["field"] == "note"
    put = client.put("/v1/priors", json={"priors": priors, "note": "statements of the review"},
                     headers=auth(tokens["modeler"]))
    assert put.status_code == 200
    # the API body carries no [meta]: the set is stored without statements
    [entry] = client.get("/v1/priors/history", headers=auth(tokens["reader"])).get_json()[
        "history"]
    assert entry["note"] == "statements of the review" and entry["created_by"] == \
        "modeler-token"
    [anonymous] = client.get("/v1/priors/history").get_json()["history"]
    assert "created_by" not in anonymous
    compared = client.get("/v1/priors/compare?a=default&b=1").get_json()
    assert compared["b"]["prior_set_id"] == 1 and not compared["same_priors"]


def test_the_version_fitted_with_a_set_is_found_without_a_new_fit(fitted_instance, tmp_path):
    """The current version was fitted with the default priors: comparing them fits nothing,
    and the history lists that version under the set."""
    from forecasting.services.workbench import _version_for

    folder = tmp_path / "instance"
    settings = _copy(fitted_instance, folder)
    database = connect(settings.database_url)
    registry = Registry(settings.registry_path)
    try:
        version, fitted = _version_for(resolve("default", database, settings), settings,
                                       database, registry, load_codebook(settings), "tester",
                                       None)
        assert not fitted and version.version == registry.current().version
        default = load_priors(settings.default_priors_path)
        database.priors.save(default.to_dict(), default.content_hash, "tester", "as shipped")
        [entry] = prior_history(database, registry)
    finally:
        database.dispose()
    assert [v["version"] for v in entry["versions"]] == [version.version]
    assert entry["versions"][0]["current"] and not entry["versions"][0]["candidate"]


@pytest.mark.slow
def test_a_candidate_fit_is_stored_never_served_and_scored_against_the_active_set(
        fitted_instance, workbench, tmp_path):
    """The done-when of issue 21 past the statements: the elicited set fitted as a candidate
    (stored, not current, marked), its forecasts and LOTO score beside the active set's."""
    from forecasting.services.workbench import compare_with_fits

    folder = tmp_path / "instance"
    settings = _copy(fitted_instance, folder)
    database = connect(settings.database_url)
    registry = Registry(settings.registry_path)
    current = registry.current().version
    tiny = SamplerSettings(sampler="nutpie", chains=2, draws=200, tune=200, target_accept=0.9,
                           seed=7)
    try:
        doc = compare_with_fits(settings, database, registry, load_codebook(settings),
                                str(workbench[2] / "elicited.toml"), "active", actor="tester",
                                sampler=SMALL_SAMPLER, loto_sampler=tiny, max_refits=0)
        history = prior_history(database, registry)
    finally:
        database.dispose()
    assert doc["a"]["candidate"] and doc["a"]["version"] != current
    assert doc["b"]["version"] == current and not doc["b"]["candidate"]
    candidate = registry.get(doc["a"]["version"])
    assert candidate.metadata["fitted_as"] == CANDIDATE
    assert registry.current().version == current  # never served by being fitted
    assert doc["forecasts"]["cells"] > 0 and len(doc["forecasts"]["largest"]) == 10
    for side in ("a", "b"):
        assert doc[side]["loto"]["elpd_loo"] < 0
    assert doc["loto"]["n_triggers"] > 10 and "verdict" in doc["loto"]
    assert history == []  # nothing stored: the candidate came from a file
