"""The forecast ledger's two faces: /v1/ledger and `forecast ledger` (issue 19).

A new user registers a trigger, sees its frozen forecasts, codes the outcomes, and the
scorecard updates without any other step; tampering is detected by verify."""

from __future__ import annotations

import json

import pytest
from fixtures_api import auth, cli_on
from helpers import csv_text, episode_row
from sqlalchemy import text

from forecasting.store import connect

TRIGGER = "2026-12-announced-leak"
BODY = {"trigger_id": TRIGGER, "partners": ["ISR", "GBR"], "intel_types": ["humint", "sigint"],
        "trigger_type": "disclosure_incident", "trigger_date": "2026-11-30", "severity": 3,
        "alignment": 1, "description": "A leak announced before any partner reacted",
        "sources": ["Example report, 2026-11-30"]}


def _outcome(partner, intel_type, level):
    return episode_row(trigger_id=TRIGGER, trigger_date="2026-11-30", coded_at="2026-11-30",
                       severity=3, alignment=1, partner=partner, intel_type=intel_type,
                       level=level)


@pytest.mark.parametrize("role, status", [("reader", 403), ("modeler", 403), ("coder", 201)])
def test_registering_needs_a_coder_or_forecaster_token(client, tokens, served_model, role,
                                                       status):
    assert client.post("/v1/ledger/triggers", json=BODY).status_code == 401
    assert client.post("/v1/ledger/triggers", json=BODY,
                       headers=auth(tokens[role])).status_code == status


def test_a_forecaster_registers_sees_frozen_forecasts_codes_outcomes_and_the_scorecard_updates(
        client, tokens, served_model, api_settings):
    forecaster = cli_on(api_settings)("token", "create", "fiona", "--role", "forecaster")
    token = forecaster.output.strip().splitlines()[-1]
    made = client.post("/v1/ledger/triggers", json=BODY, headers=auth(token))
    assert made.status_code == 201, made.get_json()
    frozen = made.get_json()["forecasts"]
    assert len(frozen) == 4 and all(f["actor"] == "fiona" for f in frozen)
    listed = client.get("/v1/ledger/forecasts?status=open").get_json()
    assert listed["open"] == 4 and listed["forecasts"][0]["latest"]["seq"] == frozen[0]["seq"]
    assert client.get("/v1/ledger/scorecard").get_json()["overall"]["n"] == 0
    assert client.get("/v1/ledger/scorecard/reliability.png").status_code == 404

    # a coder codes two reactions: nothing else is run
    coded = client.post("/v1/episodes", headers=auth(tokens["coder"]), json={"episodes": [
        _outcome("ISR", "humint", 2), _outcome("GBR", "sigint", 0)]})
    assert coded.status_code == 201
    card = client.get("/v1/ledger/scorecard").get_json()
    assert card["overall"]["n"] == 2 and served_model.version in card["by_version"]
    assert set(card["overall"]["scores"]) >= {"model", "climatology", "no_pooling"}
    png = client.get("/v1/ledger/scorecard/reliability.png")
    assert png.status_code == 200 and png.data[:4] == b"\x89PNG"
    resolved = client.get("/v1/ledger/forecasts?status=resolved").get_json()["forecasts"]
    assert {(r["partner"], r["intel_type"], r["outcome"]["level"]) for r in resolved} == {
        ("ISR", "humint", 2), ("GBR", "sigint", 0)}

    shown = client.get(f"/v1/ledger/triggers/{TRIGGER}").get_json()
    kinds = [e["kind"] for e in shown["entries"]]
    assert kinds == ["trigger"] + ["forecast"] * 4 + ["score"] * 2
    assert "actor" not in shown["entries"][0]  # an anonymous reader sees no names
    assert client.get("/v1/ledger/verify").get_json()["intact"] is True


def test_corrections_and_updates_append_and_errors_name_the_field(client, tokens,
                                                                  served_model):
    coder = auth(tokens["coder"])
    seq = client.post("/v1/ledger/triggers", json=BODY, headers=coder).get_json()["trigger"]["seq"]
    again = client.post("/v1/ledger/triggers", json=BODY, headers=coder)
    assert again.status_code == 409 and "trigger_id" in again.get_json()["detail"]
    bad = client.post("/v1/ledger/triggers", json={**BODY, "trigger_id": "x", "severity": None},
                      headers=coder)
    assert bad.status_code == 400 and bad.get_json()["errors"][0]["field"] == "severity"
    update = client.post(f"/v1/ledger/triggers/{TRIGGER}/forecasts", headers=coder, json={})
    assert update.status_code == 200 and update.get_json()["forecasts"] == []
    fix = client.post(f"/v1/ledger/entries/{seq}/corrections", headers=coder,
                      json={"reason": "announced twice", "void": True})
    assert fix.status_code == 201 and fix.get_json()["refers_to"] == seq
    assert client.post("/v1/ledger/entries/999/corrections", headers=coder,
                       json={"reason": "x"}).status_code == 404
    assert client.get("/v1/ledger/triggers/unknown").status_code == 404


def test_the_command_line_registers_shows_scores_and_verify_catches_tampering(
        api_settings, served_model):
    forecast = cli_on(api_settings)
    made = forecast("ledger", "register", TRIGGER, "--partner", "ISR,GBR", "--intel-type",
                    "humint", "--trigger-type", "disclosure_incident", "--date", "2026-11-30",
                    "--severity", 3, "--alignment", 1, "--json")
    assert made.exit_code == 0, made.output
    assert len(json.loads(made.output)["forecasts"]) == 2
    csv = api_settings.instance_path / "outcomes.csv"
    csv.write_text(csv_text([_outcome("ISR", "humint", 1)]))
    assert forecast("import", csv).exit_code == 0
    assert "1 scored forecasts on 1 triggers" in forecast("ledger", "scorecard").output
    assert forecast("ledger", "score").output.startswith("0 forecasts scored")  # owed once
    listed = json.loads(forecast("ledger", "list", "--json").output)
    assert (listed["open"], listed["resolved"]) == (1, 1)
    assert "score" in forecast("ledger", "show", TRIGGER).output
    # GBR's humint is still open: forecast again, now after ISR's coded reaction
    updated = forecast("ledger", "update", "--all")
    assert f"{TRIGGER}: 1 forecasts appended, 0 unchanged, 1 cells resolved" in updated.output
    assert forecast("ledger", "update").exit_code == 2  # a trigger or --all
    verified = forecast("ledger", "verify")
    assert verified.exit_code == 0 and "5 entries are intact" in verified.output

    database = connect(api_settings.database_url)
    with database.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER ledger_entries_no_update"))
        conn.execute(text("UPDATE ledger_entries SET model_version = 'other' WHERE seq = 2"))
    database.dispose()
    tampered = forecast("ledger", "verify")
    assert tampered.exit_code != 0
    assert "ledger entry 2" in tampered.output and "changed after it was written" in tampered.output
