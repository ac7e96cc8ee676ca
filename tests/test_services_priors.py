"""Submitting priors: one implementation, the same answer and audit rows from both faces."""

import json

import pytest
from fixtures_api import audit_rows, auth, cli_on

from forecasting.model.priors import load_priors
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
    body = {"priors": TIGHTER}
    client.put("/v1/priors", json=body, headers=auth(tokens["modeler"]))
    before = _audit(api_settings)
    again = client.put("/v1/priors", json=body, headers=auth(tokens["modeler"])).get_json()
    assert again["refit"] is None and again["source"] == "prior set #1"
    cli = cli_on(api_settings)("priors", "set", priors_file, "--json")
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
