"""Validating, checking and submitting priors: one implementation, the same answer and audit rows
from both faces (the CLI and the API)."""

import json

import pytest
from fixtures_api import audit_rows, auth, cli_on

from forecasting.model.priors import load_priors
from forecasting.services.priors import CHECK_DRAWS, StoredPriorsError, check_priors
from forecasting.settings import DEFAULT_PRIORS_DIR

DEFAULT = load_priors(DEFAULT_PRIORS_DIR / "default.toml").to_dict()
TIGHTER = {**DEFAULT, "sigma_pt": {"dist": "HalfNormal", "kwargs": {"sigma": 0.2}}}


def _toml(priors: dict) -> str:
    def value(v):
        return json.dumps(v) if not isinstance(v, dict) else \
            "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"

    return "\n".join(f"{name} = {value(spec)}" for name, spec in priors.items()) + "\n"


def _without_times(value):
    """Answers and audit rows minus what differs between two runs: clocks and row ids."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items()
                if not k.endswith("_at") and k not in ("not_before", "id", "at")}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _audit(settings):
    return audit_rows(settings, "priors:update", "refit:request")


@pytest.fixture
def priors_file(tmp_path):
    path = tmp_path / "tighter.toml"
    path.write_text(_toml(TIGHTER))
    return path


def test_the_toml_written_here_reads_back_as_the_same_priors(priors_file):
    assert load_priors(priors_file).to_dict() == TIGHTER


def test_the_cli_and_the_api_give_the_same_answer_and_audit_rows(
        client, tokens, api_settings, twin_settings, priors_file):
    api = client.put("/v1/priors", json={"priors": TIGHTER, "note": "tighter interactions"},
                     headers=auth(tokens["modeler"]))
    assert api.status_code == 200
    cli = cli_on(twin_settings)("priors", "set", priors_file, "--note", "tighter interactions",
                                "--actor", "modeler-token", "--json")
    assert cli.exit_code == 0, cli.output
    api_doc, cli_doc = api.get_json(), json.loads(cli.output)
    assert api_doc["source"] == "prior set #1" and api_doc["refit"]["reason"] == "priors"
    assert _without_times(cli_doc) == _without_times(api_doc)
    audit = _audit(api_settings)
    assert [(actor, action) for actor, action, _ in audit] == [
        ("modeler-token", "priors:update"), ("modeler-token", "refit:request")]
    assert audit[0][2]["note"] == "tighter interactions"
    assert _audit(twin_settings) == audit


def test_resubmitting_the_active_priors_changes_nothing_on_either_face(
        client, tokens, api_settings, priors_file):
    body = {"priors": TIGHTER, "note": "tighter interactions"}
    client.put("/v1/priors", json=body, headers=auth(tokens["modeler"]))
    before = _audit(api_settings)
    again = client.put("/v1/priors", json=body, headers=auth(tokens["modeler"])).get_json()
    assert again["refit"] is None and again["source"] == "prior set #1"
    cli = cli_on(api_settings)("priors", "set", priors_file, "--json", "--note", "again")
    assert json.loads(cli.output)["refit"] is None
    assert _audit(api_settings) == before


def test_invalid_priors_get_the_same_message_from_both_faces(client, tokens, twin_settings,
                                                            tmp_path):
    bad = {**DEFAULT, "sigma_bloc": {"dist": "HalfNormal", "kwargs": {"sigma": -1.0}}}
    api = client.put("/v1/priors", json={"priors": bad}, headers=auth(tokens["modeler"]))
    assert api.status_code == 400 and api.get_json()["title"] == "Invalid priors"
    detail = api.get_json()["detail"]
    assert detail.startswith("sigma_bloc.kwargs.sigma: ") and "-1.0" in detail
    assert api.get_json()["errors"][0]["field"] == "sigma_bloc.kwargs.sigma"
    path = tmp_path / "bad.toml"
    path.write_text(_toml(bad))
    cli = cli_on(twin_settings)("priors", "set", path)
    assert cli.exit_code == 1
    assert f"{path}: {detail}" in " ".join(cli.output.split())


# -- issue 15: priors that every later refit failed on, once accepted by PUT /v1/priors ----------

UNUSABLE = {
    "abstract": ("sigma_event", {"dist": "Distribution", "kwargs": {}}),
    "abstract continuous": ("sigma_event", {"dist": "Continuous", "kwargs": {}}),
    "improper": ("beta_severity", {"dist": "Flat", "kwargs": {}}),
    "improper half": ("sigma_event", {"dist": "HalfFlat", "kwargs": {}}),
    "discrete": ("beta_severity", {"dist": "Poisson", "kwargs": {"mu": 1.0}}),
    "point mass": ("beta_severity", {"dist": "DiracDelta", "kwargs": {"c": 0.5}}),
    "uniform lower > upper": ("beta_severity",
                              {"dist": "Uniform", "kwargs": {"lower": 2.0, "upper": 1.0}}),
    "scale 1e308": ("sigma_event", {"dist": "HalfNormal", "kwargs": {"sigma": 1e308}}),
}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_unusable_priors_are_refused_by_both_faces_and_nothing_changes(
        case, client, tokens, api_settings, tmp_path):
    name, spec = UNUSABLE[case]
    bad = {**DEFAULT, name: spec}
    api = client.put("/v1/priors", json={"priors": bad}, headers=auth(tokens["modeler"]))
    assert api.status_code == 400 and api.get_json()["title"] == "Invalid priors"
    assert api.get_json()["detail"].startswith(f"{name}")
    path = tmp_path / "bad.toml"
    path.write_text(_toml(bad))
    forecast = cli_on(api_settings)
    assert forecast("priors", "set", path).exit_code == 1
    validated = forecast("priors", "validate", path, "--json")
    assert validated.exit_code == 1
    assert [e["field"].split(".")[0] for e in json.loads(validated.output)["errors"]] == [name]
    # nothing stored, no refit queued: the next fit still uses the shipped priors
    assert _audit(api_settings) == []
    shown = json.loads(forecast("priors", "show", "--json").output)
    assert shown["history"] == [] and shown["priors"] == DEFAULT


def test_every_problem_is_reported_at_once_by_both_faces(client, tokens, api_settings, tmp_path):
    bad = {**DEFAULT, "sigma_event": {"dist": "HalfNormal", "kwargs": {"sigma": 1e308}},
           "beta_severity": {"dist": "Flat", "kwargs": {}},
           "cutpoints": {"dist": "Normal", "kwargs": {"mu": [3.0, 2.0, 1.0], "sigma": 1.0}}}
    fields = ["cutpoints.kwargs.mu", "beta_severity", "sigma_event.kwargs.sigma"]
    api = client.put("/v1/priors", json={"priors": bad}, headers=auth(tokens["modeler"]))
    detail = api.get_json()["detail"]
    assert api.status_code == 400
    assert [part.split(": ")[0] for part in detail.split("; ") if ": " in part][:3] == fields
    assert [e["field"] for e in api.get_json()["errors"]] == fields  # each beside its input
    path = tmp_path / "bad.toml"
    path.write_text(_toml(bad))
    validated = cli_on(api_settings)("priors", "validate", path)
    assert validated.exit_code == 1
    lines = [line for line in validated.output.splitlines() if line.startswith(f"{path}: ")]
    assert [line.split(": ")[1] for line in lines[:3]] == fields
    assert "3 problems; nothing was stored" in " ".join(validated.output.split())


def test_validate_accepts_a_usable_file_and_stores_nothing(api_settings, priors_file):
    forecast = cli_on(api_settings)
    done = forecast("priors", "validate", priors_file, "--json")
    assert done.exit_code == 0
    assert json.loads(done.output) == {"valid": True, "errors": [],
                                       "content_hash": load_priors(priors_file).content_hash}
    assert json.loads(forecast("priors", "show", "--json").output)["history"] == []


# -- the prior check: one service function, numpy draws, finite answers -------------------------


def test_the_check_gives_the_same_answer_from_both_faces(client, tokens, api_settings,
                                                         priors_file):
    api = client.post("/v1/priors/check", json={"priors": TIGHTER},
                      headers=auth(tokens["modeler"]))
    assert api.status_code == 200
    cli = cli_on(api_settings)("priors", "check", priors_file, "--json")
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output) == api.get_json()
    assert api.get_json()["content_hash"] == load_priors(priors_file).content_hash


def test_the_service_check_draws_once_and_returns_strict_json(codebook):
    checked = check_priors(codebook, TIGHTER)
    summary = checked["prior_predictive"]
    assert summary["draws"] == CHECK_DRAWS and "samples" not in summary
    json.dumps(checked, allow_nan=False)
    assert check_priors(codebook, TIGHTER) == checked  # the same draws: the same answer


def test_a_prior_whose_check_would_hold_infinities_is_refused_naming_it(
        client, tokens, api_settings, tmp_path):
    # a Cauchy reaction scale at the widest scale allowed: valid, but its draws reach
    # thousands of logits and the odds ratios of the check would be infinite
    heavy = {**DEFAULT, "sigma_reaction": {"dist": "HalfStudentT",
                                           "kwargs": {"nu": 1.0, "sigma": 10.0}}}
    api = client.post("/v1/priors/check", json={"priors": heavy},
                      headers=auth(tokens["modeler"]))
    assert api.status_code == 400
    assert "NaN" not in api.get_data(as_text=True) and "Infinity" not in api.get_data(as_text=True)
    assert api.get_json()["detail"].startswith("sigma_reaction: its prior draws make")
    path = tmp_path / "heavy.toml"
    path.write_text(_toml(heavy))
    cli = cli_on(api_settings)("priors", "check", path)
    assert cli.exit_code == 1
    assert f"{path}: {api.get_json()['detail']}" in " ".join(cli.output.split())


def test_a_set_stored_before_these_checks_is_shown_with_its_problems_and_no_fit_runs_on_it(
        api_settings, codebook, priors_file):
    """An instance that accepted a scale of 1e308 before issue 15 keeps it active: the next
    fit stops at once naming the set and the fix, `priors show` says why, and submitting a
    usable set clears it."""
    from forecasting.registry import Registry
    from forecasting.services.fits import fit_and_register
    from forecasting.store import connect

    stored = {**DEFAULT, "sigma_event": {"dist": "HalfNormal", "kwargs": {"sigma": 1e308}}}
    database = connect(api_settings.database_url)
    database.priors.save(stored, "an-old-hash", "modeler-token", "before issue 15")
    try:
        with pytest.raises(StoredPriorsError, match=r"^priors: the active prior set #1 was "
                           r"stored before .*; sigma_event.kwargs.sigma: must be between"):
            fit_and_register(api_settings, database, Registry(api_settings.registry_path),
                             codebook)
    finally:
        database.dispose()
    forecast = cli_on(api_settings)
    shown = json.loads(forecast("priors", "show", "--json").output)
    assert shown["source"] == "prior set #1" and shown["priors"] == stored
    assert [p["field"] for p in shown["problems"]] == ["priors", "sigma_event.kwargs.sigma"]
    assert forecast("priors", "check").exit_code == 1
    assert forecast("priors", "set", priors_file, "--note", "replace the unusable set").exit_code == 0
    shown = json.loads(forecast("priors", "show", "--json").output)
    assert "problems" not in shown and shown["priors"] == TIGHTER
