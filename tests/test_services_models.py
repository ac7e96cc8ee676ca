"""Promotion: one implementation, always audited (who and why), from every path to it."""

import getpass
import json
import sys
import types

import pytest
from fixtures_api import audit_rows, auth, cli_on
from fixtures_registry import derive, fit_metadata

from forecasting.registry import Registry

USER = f"cli:{getpass.getuser()}"


def _promotions(settings):
    return audit_rows(settings, "model:promote")


def test_the_cli_and_the_api_give_the_same_answer_and_audit_rows(
        client, tokens, api_settings, twin_settings, api_template):
    versions = api_template[2]
    for settings in (api_settings, twin_settings):  # the same starting point, unaudited
        Registry(settings.registry_path).promote(versions["served"])
    api = client.post(f"/v1/models/{versions['second']}/promote", json={"reason": "rollback drill"},
                      headers=auth(tokens["modeler"]))
    assert api.status_code == 200
    cli = cli_on(twin_settings)("promote", versions["second"], "--reason", "rollback drill",
                                "--actor", "modeler-token", "--json")
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output) == api.get_json()
    assert api.get_json()["current"] is True and api.get_json()["version"] == versions["second"]
    expected = [("modeler-token", "model:promote", {
        "version": versions["second"], "previous": versions["served"], "reason": "rollback drill"})]
    assert _promotions(api_settings) == expected
    assert _promotions(twin_settings) == expected


def test_promotion_without_a_reason_still_names_who(client, tokens, api_settings, api_template,
                                                    served_model):
    versions = api_template[2]
    assert client.post(f"/v1/models/{versions['second']}/promote",
                       headers=auth(tokens["admin"])).status_code == 200
    assert cli_on(api_settings)("promote", versions["served"]).exit_code == 0
    assert [(actor, detail["version"], detail["reason"])
            for actor, _, detail in _promotions(api_settings)] == [
        ("admin-token", versions["second"], ""), (USER, versions["served"], "")]


def test_a_reason_that_is_not_text_is_refused(client, tokens, api_template):
    r = client.post(f"/v1/models/{api_template[2]['second']}/promote", json={"reason": 42},
                    headers=auth(tokens["admin"]))
    assert r.status_code == 400 and r.get_json()["errors"][0]["field"] == "reason"


def test_a_failed_version_is_refused_with_the_same_message_and_nothing_audited(
        client, tokens, api_settings, twin_settings, api_template):
    failed = api_template[2]["failed"]
    api = client.post(f"/v1/models/{failed}/promote", headers=auth(tokens["admin"]))
    assert api.status_code == 409
    cli = cli_on(twin_settings)("promote", failed)
    assert cli.exit_code == 1
    assert api.get_json()["detail"] in " ".join(cli.output.split())
    assert "failed its diagnostics gate" in api.get_json()["detail"]
    assert _promotions(api_settings) == [] and _promotions(twin_settings) == []
    assert Registry(api_settings.registry_path).current_or_none() is None


@pytest.fixture
def fake_fitting(monkeypatch, fitted_version, fitted_posterior):
    """`forecast fit` without sampling: a stand-in forecasting.model.fitting whose fit
    returns the session's fit, derived with the verdicts appended to the returned list."""
    verdicts = []

    def fit_and_diagnose(frame, codebook, priors, sampler, gate, progress=False):
        verdict = verdicts.pop(0)
        tree, meta = derive(fitted_posterior, fit_metadata(fitted_version), verdict=verdict,
                            data_hash=f"data-fit-{len(frame)}-{verdict}", episodes=len(frame))
        return types.SimpleNamespace(idata=tree, metadata=lambda: meta)

    monkeypatch.setitem(sys.modules, "forecasting.model.fitting",
                        types.SimpleNamespace(fit_and_diagnose=fit_and_diagnose))
    return verdicts


def test_forecast_fit_audits_the_promotion_it_makes(api_settings, fake_fitting):
    forecast = cli_on(api_settings)
    fake_fitting.append("pass")
    fitted = forecast("fit")
    assert fitted.exit_code == 0, fitted.output
    current = Registry(api_settings.registry_path).current()
    assert f"promoted {current.version}" in fitted.output
    [(actor, _, detail)] = _promotions(api_settings)
    assert actor == USER and detail["version"] == current.version
    assert detail["previous"] is None
    assert detail["reason"] == "fitted on 8 episodes and passed its diagnostics gate"


def test_a_fit_that_is_not_promoted_leaves_no_promotion_row(api_settings, fake_fitting):
    forecast = cli_on(api_settings)
    fake_fitting.extend(["pass", "fail"])
    assert forecast("fit", "--no-promote").exit_code == 0
    assert forecast("fit").exit_code == 3  # failed its gate
    assert _promotions(api_settings) == []
    assert Registry(api_settings.registry_path).current_or_none() is None
