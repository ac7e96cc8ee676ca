"""Coding quality from both faces: /v1/coding/... and `forecast coding ...`, and the
adjudicator role."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, replace

import pytest
from fixtures_api import auth, cli_on
from fixtures_registry import derive, fit_metadata
from helpers import episode_row
from huey import MemoryHuey

from forecasting.refits import RefitService
from forecasting.registry import Registry
from forecasting.services import coding as coding_service
from forecasting.store import connect

KEY = ("2017-oval-office-disclosure", "ISR", "humint")
PATH = "/v1/episodes/2017-oval-office-disclosure/ISR/humint"


@pytest.fixture
def adjudicator(api_settings):
    database = connect(api_settings.database_url)
    token = database.tokens.create("carol", "adjudicator")
    database.dispose()
    return token


@pytest.fixture
def second_coding(client, tokens):
    """bob codes two of the template's episodes (coded by "tester"): humint differs."""
    rows = [episode_row(intel_type="humint", level=3, coder="bob"),
            episode_row(intel_type="sigint", level=0, coder="bob")]
    r = client.post("/v1/episodes", json={"episodes": rows}, headers=auth(tokens["coder"]))
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_a_second_coders_post_is_a_coding_not_a_revision(client, second_coding):
    assert (second_coding["inserted"], second_coding["revised"], second_coding["codings"]) == \
        (0, 0, 2)
    assert second_coding["refit"]["reason"] == "episodes"
    episode = client.get(PATH).get_json()
    assert episode["revision"] == 1 and episode["level"] == 0 and episode["coder"] == "tester"
    assert episode["coding"]["status"] == "disputed"
    assert {c["coder"]: c["values"]["level"] for c in episode["coding"]["codings"]} == \
        {"bob": 3, "tester": 0}
    single = client.get(PATH.replace("humint", "geoint")).get_json()["coding"]
    assert single == {"status": "single", "codings": [], "adjudications": []}


def test_the_disagreement_is_served_for_adjudication(client, second_coding):
    body = client.get("/v1/coding/disagreements").get_json()
    assert body["total"] == 1
    [entry] = body["disagreements"]
    assert (entry["trigger_id"], entry["partner"], entry["intel_type"]) == KEY
    assert entry["fields"] == {"level": {"bob": 3, "tester": 0}}


def test_alpha_per_field_with_its_interval_is_served(client, second_coding):
    r = client.get("/v1/coding/reliability?samples=100")
    assert r.status_code == 200
    body = r.get_json()
    assert body["episodes"] == 2 and body["coders"] == ["bob", "tester"]
    level = body["fields"]["level"]
    assert level["measure"] == "ordinal" and level["alpha"] is not None and "ci95" in level
    assert body["fields"]["trigger_type"]["measure"] == "nominal"
    assert body["pairs"][0]["coders"] == ["bob", "tester"]
    assert body["coverage"]["disputed"] == 1 and body["coverage"]["agreed"] == 1
    assert client.get("/v1/coding/reliability?samples=5").status_code == 400


def test_only_an_adjudicator_or_admin_adjudicates_and_it_revises_the_episode(
        client, tokens, adjudicator, second_coding):
    body = {"trigger_id": KEY[0], "partner": KEY[1], "intel_type": KEY[2],
            "values": {"level": 3}, "reason": "the second coder's source is the primary one"}
    assert client.post("/v1/coding/adjudications", json=body).status_code == 401
    r = client.post("/v1/coding/adjudications", json=body, headers=auth(tokens["coder"]))
    assert r.status_code == 403 and "coder" in r.get_json()["detail"]
    r = client.post("/v1/coding/adjudications", json=body, headers=auth(adjudicator))
    assert r.status_code == 201, r.get_json()
    result = r.get_json()
    assert result["revision"] == 2 and result["adjudicator"] == "carol"
    assert result["refit"]["reason"] == "episodes"
    episode = client.get(PATH).get_json()
    assert (episode["level"], episode["coder"], episode["revision"]) == (3, "carol", 2)
    assert episode["coding"]["status"] == "adjudicated"
    assert [c["coder"] for c in episode["coding"]["codings"]] == ["bob", "tester"]
    assert episode["coding"]["adjudications"][0]["reason"] == body["reason"]
    assert client.get("/v1/coding/disagreements").get_json()["total"] == 0


def test_adjudication_errors_name_the_field(client, tokens, adjudicator, second_coding):
    base = {"trigger_id": KEY[0], "partner": KEY[1], "intel_type": KEY[2], "reason": "r"}
    r = client.post("/v1/coding/adjudications", json=base | {"values": {"notes": "x"}},
                    headers=auth(adjudicator))
    assert r.status_code == 400 and r.get_json()["errors"][0]["field"] == "values.notes"
    single = base | {"intel_type": "geoint", "values": {"level": 1}}
    r = client.post("/v1/coding/adjudications", json=single, headers=auth(tokens["admin"]))
    assert r.status_code == 409 and "has 0 coding(s)" in r.get_json()["detail"]
    missing = base | {"partner": "GBR", "values": {"level": 1}}
    assert client.post("/v1/coding/adjudications", json=missing,
                       headers=auth(adjudicator)).status_code == 404


def test_the_command_line_serves_the_same(api_settings, second_coding, tmp_path):
    forecast = cli_on(api_settings)
    report = json.loads(forecast("coding", "reliability", "--samples", "100", "--json").output)
    assert report["episodes"] == 2 and "level" in report["fields"]
    shown = forecast("coding", "disagreements").output
    assert "humint" in shown and "bob: 3" in shown and "tester: 0" in shown
    done = forecast("coding", "adjudicate", *KEY, "--set", "level=3", "--reason", "primary",
                    "--actor", "carol")
    assert done.exit_code == 0, done.output
    assert "revision 2 by carol" in done.output and "queued" in done.output
    bad = forecast("coding", "adjudicate", *KEY, "--set", "sources=x", "--reason", "r")
    assert bad.exit_code == 2 and "FIELD=VALUE" in bad.output
    out = tmp_path / "second.csv"
    sampled = forecast("coding", "sample", "3", out, "--seed", "2")
    assert sampled.exit_code == 0, sampled.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 3 and all(r["level"] == "" and r["coder"] == "" for r in rows)


def test_the_floor_check_fails_the_command_naming_the_field(api_settings, second_coding):
    forecast = cli_on(api_settings)
    from click.testing import CliRunner

    from forecasting.cli import main

    env = {"FORECAST_INSTANCE": str(api_settings.instance_path),
           "FORECAST_CODING_ALPHA_FLOOR": "level=0.99"}
    result = CliRunner().invoke(main, ["coding", "reliability", "--samples", "100", "--check"],
                                env=env)
    assert result.exit_code == 1 and "coding level: Krippendorff's alpha" in result.output
    assert forecast("coding", "reliability", "--samples", "100", "--check").exit_code == 0


def test_an_adjudicator_token_is_created_from_the_command_line(api_settings):
    created = cli_on(api_settings)("token", "create", "dana", "--role", "adjudicator")
    assert created.exit_code == 0, created.output
    database = connect(api_settings.database_url)
    identity = database.tokens.authenticate(created.output.strip().splitlines()[-1])
    database.dispose()
    assert identity.role == "adjudicator" and identity.may("codings:adjudicate")
    assert identity.may("episodes:write") and not identity.may("priors:write")


@dataclass
class _StubResult:
    """What fit_and_diagnose returns, made from the session's real fit (no sampling)."""

    idata: object
    meta: dict

    def metadata(self):
        return self.meta


def test_the_refit_worker_fails_below_the_floor_and_then_fits_the_adjudicated_value(
        api_settings, second_coding, served_model, fitted_version, fitted_posterior, codebook,
        monkeypatch):
    import forecasting.model.fitting as fitting

    fed = []

    def fake_fit(frame, *args, **kwargs):
        fed.append(frame)
        tree, meta = derive(fitted_posterior, fit_metadata(fitted_version), verdict="pass",
                            data_hash=f"coding-{len(fed)}", episodes=len(frame))
        return _StubResult(tree, meta)

    monkeypatch.setattr(fitting, "fit_and_diagnose", fake_fit)
    settings = replace(api_settings, coding_alpha_floor=(("level", 0.99),))
    database = connect(settings.database_url)
    service = RefitService(settings=settings, database=database,
                           registry=Registry(settings.registry_path), codebook=codebook,
                           huey=MemoryHuey("test-coding"))
    humint = database.episodes.get(*KEY)["id"]
    try:
        job = service.request("episodes", "bob", delay=0)
        failed = service.run(job["id"])
        assert failed["status"] == "failed" and not failed["promoted"]
        [reason] = failed["detail"]["reasons"]
        assert reason.startswith("coding level: Krippendorff's alpha") and "0.99" in reason
        assert service.registry.current().version == served_model.version  # still serving
        assert humint not in set(fed[0]["id"]) and len(fed[0]) == 7  # disputed: held back

        service.settings = replace(settings, coding_alpha_floor=())
        result = coding_service.adjudicate(database, codebook, service, KEY, {"level": 3},
                                           "settled", actor="carol")
        done = service.run(result["refit"]["id"])
        assert done["status"] == "succeeded" and done["promoted"]
        fit_frame = fed[1].set_index("id")
        assert len(fit_frame) == 8 and fit_frame.loc[humint, "level"] == 3
        version = service.registry.current()
        assert version.metadata["coding"]["adjudicated"] == [humint]
        assert version.metadata["coding"]["counts"]["adjudicated"] == 1
    finally:
        database.dispose()
