import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from fixtures_api import cli_on
from fixtures_registry import FAILED_REASON
from helpers import csv_text, episode_row

from forecasting.cli import main
from forecasting.settings import DEFAULT_PRIORS_DIR

TYPES = ["sigint", "humint", "geoint", "sources", "methods", "cyber", "ct", "military"]


@pytest.fixture
def forecast(tmp_path):
    """Run the `forecast` command against a fresh instance folder."""
    runner = CliRunner()
    env = {"FORECAST_INSTANCE": str(tmp_path / "instance")}

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)

    assert invoke("init").exit_code == 0
    return invoke


def test_import_reports_counts_and_is_idempotent(forecast, tmp_path):
    path = tmp_path / "new.csv"
    path.write_text(csv_text([episode_row(intel_type=t) for t in TYPES]))
    first = forecast("import", path)
    assert first.exit_code == 0, first.output
    assert "8 new, 0 revised, 0 unchanged" in first.output
    assert "holds 8 episodes (8 with a restriction) on 1 partners" in first.output
    assert "0 new, 0 revised, 8 unchanged" in forecast("import", path).output


def test_a_file_with_bad_rows_exits_non_zero_lists_every_row_and_changes_nothing(forecast, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(csv_text([episode_row()]))
    forecast("import", good)
    before = forecast("export").output
    bad = tmp_path / "bad.csv"
    bad.write_text(csv_text([episode_row(level=3), episode_row(intel_type="cyber", partner="XXX"),
                             episode_row(intel_type="ct", trigger_date="2099-01-01")]))
    result = forecast("import", bad)
    assert result.exit_code == 1
    assert "line 3: partner: unknown code 'XXX'" in result.output
    assert "line 4: trigger_date: 2099-01-01 is in the future" in result.output
    assert "nothing was imported" in result.output
    assert forecast("export").output == before


def test_export_then_import_round_trips(forecast, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(episode_row(intel_type=t, level=i % 4))
                                for i, t in enumerate(TYPES)))
    forecast("import", source)
    exported = tmp_path / "out.csv"
    assert forecast("export", exported).exit_code == 0
    assert "0 new, 0 revised, 8 unchanged" in forecast("import", exported).output
    assert exported.read_text().splitlines()[0].startswith("trigger_id,trigger_type,trigger_date")


def test_vocab_json_lists_every_vocabulary(forecast):
    data = json.loads(forecast("vocab", "--json").output)
    assert {p["code"] for p in data["partners"]} >= {"GBR", "CAN", "AUS", "NZL", "ISR", "SAU"}
    assert [lvl["name"] for lvl in data["levels"]] == ["none", "selective", "reduced", "suspended"]
    assert "five_eyes" in forecast("vocab").output


def test_episodes_filters_and_refuses_unknown_codes(forecast, tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(csv_text([episode_row(intel_type=t, level=int(t == "ct")) for t in TYPES]))
    forecast("import", path)
    listed = json.loads(forecast("episodes", "--level", 1, "--json").output)
    assert listed["total"] == 1 and listed["episodes"][0]["intel_type"] == "ct"
    refused = forecast("episodes", "--partner", "ATLANTIS")
    assert refused.exit_code == 1 and "unknown code 'ATLANTIS'" in refused.output


def test_commands_on_an_uninitialised_instance_say_to_run_init(tmp_path):
    result = CliRunner().invoke(main, ["episodes"], env={"FORECAST_INSTANCE": str(tmp_path / "x")})
    assert result.exit_code == 1
    assert "is not initialised or is behind this version; run `forecast init`" in result.output


def test_token_create_prints_the_token_alone_on_the_last_line(forecast):
    result = forecast("token", "create", "ci-bot", "--role", "coder")
    assert result.exit_code == 0
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("fct_") and " " not in token
    assert "ci-bot" in forecast("token", "list").output
    assert forecast("token", "revoke", "ci-bot").exit_code == 0
    bad = forecast("token", "create", "x", "--role", "god")
    assert bad.exit_code == 2 and "'god' is not one of" in bad.output


@pytest.fixture
def forecast_with_models(api_settings, api_template):
    """`forecast` against an instance holding three model versions (one failed), none current."""
    return cli_on(api_settings), api_template[2]


def test_query_needs_a_current_model_then_answers_in_the_contract_shape(forecast_with_models):
    forecast, versions = forecast_with_models
    missing = forecast("query", "ISR", "humint")
    assert missing.exit_code == 1 and "no current model" in missing.output
    assert forecast("promote", versions["served"]).exit_code == 0
    body = json.loads(forecast("query", "ISR", "humint", "--severity", 3, "--json").output)
    assert set(body) == {"partner", "intel_type", "scenario", "any_restriction", "levels", "model"}
    assert body["scenario"]["severity"] == 3 and body["model"]["version"] == versions["served"]
    table = forecast("query", "ISR", "humint").output
    assert "any restriction" in table and "90% interval" in table
    unknown = forecast("query", "XXX", "humint")
    assert unknown.exit_code == 1 and "partner: unknown code 'XXX'" in unknown.output


def test_query_with_a_trigger_id_shows_what_the_forecast_conditioned_on(forecast_with_models):
    """The template instance codes ISR's eight types after the 2017 disclosure (fixtures_api)."""
    forecast, versions = forecast_with_models
    assert forecast("promote", versions["served"]).exit_code == 0
    trigger = "2017-oval-office-disclosure"
    shown = forecast("query", "SAU", "humint", "--trigger-id", trigger)
    assert shown.exit_code == 0, shown.output
    assert f"after trigger {trigger}, a disclosure_incident (severity 3, alignment 1)" in \
        shown.output
    assert "SAU humint itself: not coded yet" in shown.output
    assert f"conditioned on 8 coded episodes of trigger {trigger}" in shown.output
    assert "The Washington Post, 2017-05-15" in shown.output and "any restriction" in shown.output
    own = json.loads(forecast("query", "ISR", "sources", "--trigger-id", trigger, "--json").output)
    assert own["observed_level"] == 1 and len(own["conditioned_on"]) == 7
    assert "ISR sources itself: coded level 1" in forecast(
        "query", "ISR", "sources", "--trigger-id", trigger).output
    refused = forecast("query", "SAU", "humint", "--trigger-id", trigger, "--severity", 2)
    assert refused.exit_code == 1 and "severity: the trigger's coded scenario" in refused.output
    unknown = forecast("query", "SAU", "humint", "--trigger-id", "no-such-trigger")
    assert unknown.exit_code == 1 and "trigger_id: no episode is coded" in unknown.output


def test_models_promote_and_diagnose(forecast_with_models):
    forecast, versions = forecast_with_models
    refused = forecast("promote", versions["failed"])
    assert refused.exit_code == 1 and "failed its diagnostics gate" in refused.output
    assert forecast("promote", versions["second"]).exit_code == 0
    listed = json.loads(forecast("models", "--json").output)
    assert {m["version"]: m["current"] for m in listed}[versions["second"]] is True
    assert {m["version"]: m["verdict"] for m in listed}[versions["failed"]] == "fail"
    diagnosed = forecast("diagnose", versions["failed"])
    assert "verdict: fail" in diagnosed.output and FAILED_REASON in diagnosed.output
    as_json = json.loads(forecast("diagnose", "--json").output)
    assert as_json["version"] == versions["second"] and as_json["verdict"] == "pass"
    assert forecast("diagnose", "nope").exit_code == 1


DEFAULT_TOML = (DEFAULT_PRIORS_DIR / "default.toml").read_text()


def _priors_file(path, old, new):
    assert old in DEFAULT_TOML
    path.write_text(DEFAULT_TOML.replace(old, new))
    return path


def test_priors_show_check_and_set(forecast, tmp_path):
    shown = json.loads(forecast("priors", "show", "--json").output)
    assert shown["source"].endswith("default.toml") and shown["history"] == []
    checked = forecast("priors", "check", "--png", tmp_path / "pp.png")
    assert checked.exit_code == 0 and "P(any restriction)" in checked.output
    assert (tmp_path / "pp.png").read_bytes().startswith(b"\x89PNG")
    good = _priors_file(tmp_path / "good.toml",
                        'sigma_pt = {dist = "HalfNormal", kwargs = {sigma = 0.3}}',
                        'sigma_pt = {dist = "HalfNormal", kwargs = {sigma = 0.2}}')
    applied = forecast("priors", "set", good, "--note", "tighter")
    assert applied.exit_code == 0 and "prior set #1 is active; refit 1 queued" in applied.output
    shown = json.loads(forecast("priors", "show", "--json").output)
    assert shown["source"] == "prior set #1" and shown["priors"]["sigma_pt"]["kwargs"] == {
        "sigma": 0.2}
    assert shown["history"][0]["note"] == "tighter"
    assert "already active" in forecast("priors", "set", good, "--note", "again").output
    unexplained = forecast("priors", "set", good)
    assert unexplained.exit_code == 1 and "note: required" in unexplained.output


def test_priors_set_refuses_a_negative_scale_naming_the_file_and_key(forecast, tmp_path):
    # every other prior is the valid default, so the negative scale is the one error found
    bad = _priors_file(tmp_path / "bad.toml",
                       'sigma_bloc = {dist = "HalfNormal", kwargs = {sigma = 0.5}}',
                       'sigma_bloc = {dist = "HalfNormal", kwargs = {sigma = -1.0}}')
    refused = forecast("priors", "set", bad)
    assert refused.exit_code == 1
    message = " ".join(refused.output.split())
    assert f"{bad}: sigma_bloc.kwargs.sigma: " in message
    assert "must be positive, got -1.0" in message
    assert json.loads(forecast("priors", "show", "--json").output)["history"] == []
    broken = tmp_path / "broken.toml"
    broken.write_text("sigma_bloc = {dist = ")
    refused = forecast("priors", "set", broken)
    assert refused.exit_code == 1 and "priors are not valid TOML" in refused.output


def test_python_dash_m_runs_the_cli_as_forecast_run_starts_its_children():
    result = subprocess.run([sys.executable, "-m", "forecasting.cli", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "worker" in result.stdout and "fit" in result.stdout


@pytest.mark.parametrize(("exit_code", "message"), [
    (3, "the fit failed its diagnostics gate, so there is no model to serve"),
    (1, "the fit stopped with exit code 1, so there is no model to serve"),
])
def test_run_fits_in_a_child_process_and_serves_nothing_when_that_fit_fails(
        tmp_path, monkeypatch, exit_code, message):
    """`forecast run` forks its web workers from itself, so the fit runs as `forecast fit`
    in a child process; without a current model afterwards, nothing is served."""
    import subprocess

    import api.gunicorn_conf

    children = []

    def child(command, *args, **kwargs):
        children.append(command)
        return subprocess.CompletedProcess(command, exit_code)

    monkeypatch.setattr(subprocess, "run", child)
    monkeypatch.setattr(api.gunicorn_conf, "serve_api", lambda *a, **k: pytest.fail("served"))
    result = CliRunner().invoke(main, ["run"], env={"FORECAST_INSTANCE": str(tmp_path / "i")})
    assert result.exit_code == 1
    assert "imported 636 seed episodes" in result.output
    assert message in " ".join(result.output.split())
    assert [c[-3:] for c in children] == [["-m", "forecasting.cli", "fit"]]
