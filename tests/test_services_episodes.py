"""Importing and listing episodes: one implementation, the same behaviour from both faces."""

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner
from fixtures_api import auth, cli_on
from fixtures_store import RecordingRefits
from helpers import csv_text, episode_row

from forecasting.cli import main
from forecasting.domain.episodes import EpisodeValidationError
from forecasting.services.episodes import import_episodes
from forecasting.settings import RequestLimits


@pytest.fixture
def forecast(api_settings):
    """`forecast` on the same instance the API test client serves."""
    return cli_on(api_settings)


def _json_row(**overrides):
    row = episode_row(**overrides)
    return {**row, "severity": int(row["severity"]), "alignment": int(row["alignment"]),
            "level": int(row["level"])}


def test_forecast_import_queues_one_refit_and_says_so(forecast, tmp_path):
    path = tmp_path / "new.csv"
    path.write_text(csv_text([episode_row(partner=p, intel_type="ct") for p in ("GBR", "CAN")]))
    assert json.loads(forecast("refits", "--json").output)["queued"] == []
    imported = forecast("import", path, "--actor", "coder-alice")
    assert imported.exit_code == 0, imported.output
    assert "2 new, 0 revised, 0 unchanged" in imported.output
    status = json.loads(forecast("refits", "--json").output)
    [job] = status["queued"]
    assert job["reason"] == "episodes" and job["requested_by"] == "coder-alice"
    assert f"refit {job['id']} queued" in imported.output
    assert status["stale"] is True


def test_an_import_that_changes_nothing_queues_no_refit(forecast, tmp_path):
    path = tmp_path / "same.csv"
    path.write_text(csv_text([episode_row(partner="GBR", intel_type="ct")]))
    forecast("import", path)
    again = forecast("import", path)
    assert "0 new, 0 revised, 1 unchanged" in again.output and "queued" not in again.output
    [job] = json.loads(forecast("refits", "--json").output)["history"]
    assert job["coalesced"] == 0


def test_a_bad_file_queues_no_refit(forecast, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(csv_text([episode_row(partner="XXX")]))
    assert forecast("import", path).exit_code == 1
    assert json.loads(forecast("refits", "--json").output)["history"] == []


def test_the_cli_and_the_api_import_the_same_rows_with_the_same_audit(
        client, tokens, api_settings, twin_settings, tmp_path):
    rows = [_json_row(partner=p, intel_type="ct") for p in ("GBR", "CAN")]
    body = client.post("/v1/episodes", json={"episodes": rows},
                       headers=auth(tokens["coder"])).get_json()
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    cli = cli_on(twin_settings)
    assert cli("import", path, "--actor", "coder-token").exit_code == 0
    cli_jobs = json.loads(cli("refits", "--json").output)["queued"]
    assert body["inserted"] == 2 and body["refit"]["reason"] == "episodes"
    assert [(j["reason"], j["requested_by"]) for j in cli_jobs] == [("episodes", "coder-token")]
    api_episodes = client.get("/v1/episodes?limit=100").get_json()
    cli_episodes = json.loads(cli("episodes", "--limit", 100, "--json").output)
    assert _values(api_episodes) == _values(cli_episodes)


def _values(page):
    return page["total"], [{k: v for k, v in e.items() if k not in ("id", "created_at",
                                                                    "updated_at")}
                           for e in page["episodes"]]


@pytest.mark.parametrize(("field", "option", "code"), [
    ("partner", "--partner", "ATLANTIS"),
    ("intel_type", "--intel-type", "gossip"),
    ("trigger_type", "--trigger-type", "coup"),
])
def test_an_unknown_code_in_a_filter_is_an_error_naming_the_field_on_both_faces(
        client, forecast, field, option, code):
    r = client.get(f"/v1/episodes?{field}={code}")
    assert r.status_code == 400 and r.mimetype == "application/problem+json"
    problem = r.get_json()
    assert problem["title"] == "Unknown code"
    [error] = problem["errors"]
    assert error["field"] == field and len(error["allowed"]) > 3
    refused = forecast("episodes", option, code)
    assert refused.exit_code == 1
    assert problem["detail"] in " ".join(refused.output.split())
    assert problem["detail"].startswith(f"{field}: unknown code {code!r}; use one of [")


def test_a_known_code_with_no_episodes_is_an_empty_page_on_both_faces(client, forecast):
    assert client.get("/v1/episodes?partner=GBR").get_json()["total"] == 0
    listed = json.loads(forecast("episodes", "--partner", "GBR", "--json").output)
    assert listed == {"total": 0, "limit": 50, "offset": 0, "episodes": []}


def test_a_batch_beyond_the_settings_row_limit_is_refused_whole_and_queues_nothing(
        database, codebook, settings):
    queue = RecordingRefits(replace(settings, limits=RequestLimits(max_batch_rows=2)))
    rows = [episode_row(partner=p, intel_type="ct") for p in ("GBR", "CAN", "AUS")]
    with pytest.raises(EpisodeValidationError, match="3 rows in one import; at most 2"):
        import_episodes(database, codebook, queue, enumerate(rows, 2), actor="a", source="t")
    assert database.episodes.count() == 0 and queue.requests == []
    outcome = import_episodes(database, codebook, queue, enumerate(rows[:2], 2), actor="a",
                              source="t")
    assert outcome.summary.inserted == 2 and queue.requests == [("episodes", "a")]


def test_the_settings_limits_reach_validation_and_cut_the_error_list(database, codebook, settings):
    queue = RecordingRefits(replace(settings, limits=RequestLimits(max_text_chars=5, max_errors_listed=3)))
    rows = [episode_row(partner="GBR", intel_type=t, notes="too long", trigger_description="")
            for t in ("ct", "cyber", "sigint", "humint", "geoint")]
    with pytest.raises(EpisodeValidationError) as info:
        import_episodes(database, codebook, queue, enumerate(rows, 2), actor="a", source="t")
    assert [(e.line, e.field) for e in info.value.errors] == [(2, "notes"), (3, "notes"),
                                                             (4, "notes")]
    assert info.value.unlisted == 2
    assert database.episodes.count() == 0


def test_forecast_import_takes_its_limits_from_the_settings(tmp_path):
    env = {"FORECAST_INSTANCE": str(tmp_path / "instance"), "FORECAST_LIMIT_MAX_BATCH_ROWS": "1",
           "FORECAST_LIMIT_MAX_TEXT_CHARS": "10"}
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env).exit_code == 0
    path = tmp_path / "two.csv"
    path.write_text(csv_text([episode_row(partner=p, intel_type="ct") for p in ("GBR", "CAN")]))
    refused = runner.invoke(main, ["import", str(path)], env=env)
    assert refused.exit_code == 1
    assert "2 rows in one import; at most 1 are accepted" in refused.output
    path.write_text(csv_text([episode_row(partner="GBR", intel_type="ct", notes="x" * 11)]))
    refused = runner.invoke(main, ["import", str(path)], env=env)
    assert refused.exit_code == 1 and "notes: 11 characters; at most 10" in refused.output
