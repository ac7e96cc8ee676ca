"""Promotion: one implementation, always audited (who and why), from every path to it.
Pruning: the policy's settings, what refers to a version (evaluation results, a refit in
progress, any provider added), audited, the same from the CLI."""

import getpass
import json
import sys
import types
from dataclasses import replace

import pytest
from click.testing import CliRunner
from fixtures_api import TYPES, audit_rows, auth, cli_on
from fixtures_registry import derive, fit_metadata
from helpers import episode_row

from forecasting.cli import main
from forecasting.evaluation.reports import save_result
from forecasting.model.priors import PriorSet, load_priors
from forecasting.registry import Registry
from forecasting.services import models as model_service
from forecasting.settings import RetentionPolicy
from forecasting.store import connect

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


ELICITED = {"sigma_bloc": {"dist": "HalfNormal", "kwargs": {"sigma": 0.226}}}


def _elicited_priors(settings):
    """A prior set other than the shipped default (the active set of a fresh instance)."""
    return PriorSet.from_dict(load_priors(settings.default_priors_path).to_dict() | ELICITED)


def _save_candidate(settings, fitted_version, fitted_posterior, priors, *, tag,
                    fitted_at="2099-01-01T00:00:00+00:00", verdict="pass"):
    """A candidate fit of the workbench (`forecast priors compare --fit`), stored, not current."""
    tree, meta = derive(fitted_posterior, fit_metadata(fitted_version), verdict=verdict,
                        priors_hash=priors.content_hash, data_hash=f"data-candidate-{tag}",
                        fitted_at=fitted_at, fitted_as="candidate",
                        candidate_priors="elicited.toml")
    return Registry(settings.registry_path).save(tree, meta).version


def test_a_candidate_fit_of_priors_never_adopted_is_refused_by_both_faces(
        client, tokens, api_settings, twin_settings, fitted_version, fitted_posterior):
    elicited = _elicited_priors(api_settings)
    candidate = _save_candidate(api_settings, fitted_version, fitted_posterior, elicited,
                                tag="a")
    assert _save_candidate(twin_settings, fitted_version, fitted_posterior, elicited,
                           tag="a") == candidate
    api = client.post(f"/v1/models/{candidate}/promote", headers=auth(tokens["modeler"]))
    assert api.status_code == 409
    problem = api.get_json()
    assert problem["title"] == "Model version is a candidate fit of priors not adopted"
    assert problem["errors"] == [{"field": "version", "message": problem["detail"]}]
    detail = problem["detail"]
    assert (f"model version {candidate} is a candidate fit of prior set elicited.toml "
            f"(priors {elicited.content_hash[:12]})") in detail
    assert "not the active set (default.toml)" in detail
    assert "forecast priors set FILE" in detail and "PUT /v1/priors" in detail
    cli = cli_on(twin_settings)("promote", candidate)
    assert cli.exit_code == 1
    assert detail in " ".join(cli.output.split())
    for settings in (api_settings, twin_settings):
        assert _promotions(settings) == []
        assert Registry(settings.registry_path).current_or_none() is None


def test_a_candidate_fit_is_promoted_once_its_prior_set_is_active(
        api_settings, store, fitted_version, fitted_posterior):
    elicited = _elicited_priors(api_settings)
    candidate = _save_candidate(api_settings, fitted_version, fitted_posterior, elicited,
                                tag="b")
    registry = Registry(api_settings.registry_path)
    with pytest.raises(model_service.CandidateFitError, match=f"version: model version "
                                                              f"{candidate} is a candidate"):
        model_service.promote(api_settings, registry, store, candidate, "tester")
    store.priors.save(elicited.to_dict(), elicited.content_hash, "dana", note="adopted")
    mv = model_service.promote(api_settings, registry, store, candidate, "tester", "adopted")
    assert registry.current().version == mv.version == candidate
    # a candidate of the default priors is refused now that another set is active
    default = load_priors(api_settings.default_priors_path)
    other = _save_candidate(api_settings, fitted_version, fitted_posterior, default, tag="c")
    with pytest.raises(model_service.CandidateFitError, match=r"not the active set \(prior set #1\)"):
        model_service.promote(api_settings, registry, store, other, "tester")
    assert registry.current().version == candidate


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



def test_a_correction_of_trigger_dates_alone_is_fitted_again_not_reused(
        api_settings, codebook, monkeypatch, fitted_version, fitted_posterior):
    """The arrival model stored with a version dates the triggers: with the dates outside
    the data's fingerprint, a refit after a date correction found the old version stored
    under the same id, reused it and kept serving the old dates."""
    from forecasting.domain.cells import aggregate
    from forecasting.domain.episodes import validate_episodes
    from forecasting.services.fits import fit_and_register

    def fit_and_diagnose(frame, codebook, priors, sampler, gate, progress=False):
        tree, meta = derive(fitted_posterior, fit_metadata(fitted_version),
                            data_hash=aggregate(frame, codebook).fingerprint,
                            episodes=len(frame))
        return types.SimpleNamespace(idata=tree, metadata=lambda: meta)

    monkeypatch.setitem(sys.modules, "forecasting.model.fitting",
                        types.SimpleNamespace(fit_and_diagnose=fit_and_diagnose))
    database = connect(api_settings.database_url)
    registry = Registry(api_settings.registry_path)

    def fit():
        return fit_and_register(api_settings, database, registry, codebook)

    try:
        first = fit()
        assert (first.reused, first.promoted) == (False, True)
        assert fit().reused and fit().version.version == first.version.version  # unchanged
        # the instance's episodes (fixtures_api) as coded, their trigger a day later
        rows = [episode_row(intel_type=t, level=int(t == "sources"), trigger_date="2017-05-16")
                for t in TYPES]
        summary = database.episodes.import_episodes(
            validate_episodes(list(enumerate(rows, 2)), codebook), actor="corrector",
            codebook_version=codebook.version)
        assert summary.revised == len(rows) and summary.inserted == 0
        corrected = fit()
        assert (corrected.reused, corrected.promoted) == (False, True)
        assert corrected.version.version != first.version.version
        assert registry.current().version == corrected.version.version
    finally:
        database.dispose()


# -- pruning ------------------------------------------------------------------------------------

KEEP_ONE = RetentionPolicy(keep_passing=1, keep_failed=0)


@pytest.fixture
def store(api_settings):
    database = connect(api_settings.database_url)
    yield database
    database.dispose()


def _prune(settings, database, **kwargs):
    return model_service.prune(replace(settings, retention=KEEP_ONE),
                               Registry(settings.registry_path), database, "tester", **kwargs)


def test_prune_applies_the_policy_in_the_settings_and_audits_what_it_deleted(
        api_settings, api_template, store, served_model):
    v = api_template[2]
    dry = _prune(api_settings, store, dry_run=True)
    assert dry["deleted"] == [v["failed"]] and dry["bytes_freed"] > 0
    assert audit_rows(api_settings, "model:prune") == []
    assert Registry(api_settings.registry_path).has(v["failed"])
    report = _prune(api_settings, store, reason="disk drill")
    assert {k: report[k] for k in ("deleted", "bytes_freed")} == {
        k: dry[k] for k in ("deleted", "bytes_freed")}
    assert not Registry(api_settings.registry_path).has(v["failed"])
    # the served model is current, the second the newest passing one
    assert set(report["kept"]) == {v["served"], v["second"]}
    assert audit_rows(api_settings, "model:prune") == [("tester", "model:prune", {
        "deleted": [v["failed"]], "bytes_freed": report["bytes_freed"],
        "policy": {"keep_passing": 1, "keep_failed": 0}, "reason": "disk drill"})]
    assert _prune(api_settings, store)["deleted"] == []
    assert len(audit_rows(api_settings, "model:prune")) == 1  # nothing deleted, nothing audited


def test_a_version_with_evaluation_results_is_kept(api_settings, api_template, store,
                                                   served_model):
    failed = api_template[2]["failed"]
    save_result(api_settings, failed, "sensitivity", {"version": failed})
    report = _prune(api_settings, store)
    assert report["deleted"] == []
    [row] = [d for d in report["versions"] if d["version"] == failed]
    assert row["reasons"] == ["referenced by evaluation results (sensitivity)"]


def test_another_reference_provider_keeps_what_it_names(api_settings, api_template, store,
                                                        served_model, monkeypatch):
    """How the ledger (issue 19) keeps the versions its entries name: one more provider."""
    failed = api_template[2]["failed"]
    ledger = lambda settings, database, registry: {failed: ["ledger entry 3"]}  # noqa: E731
    monkeypatch.setattr(model_service, "REFERENCE_PROVIDERS",
                        [*model_service.REFERENCE_PROVIDERS, ledger])
    report = _prune(api_settings, store)
    assert report["deleted"] == [] and failed in report["kept"]


def test_a_refit_in_progress_keeps_its_base_and_what_it_saved(api_settings, api_template, store,
                                                              fitted_posterior, fitted_version):
    v = api_template[2]
    registry = Registry(api_settings.registry_path)
    model_service.promote(api_settings, registry, store, v["served"], "tester")
    job, _ = store.refits.request("manual", "tester", 0)
    assert store.refits.claim(job["id"], "worker:1", 60) == "claimed"
    made = registry.save(*derive(fitted_posterior, fit_metadata(fitted_version),
                                 data_hash="data-refit"))
    # someone rolls forward meanwhile: the refit's base is no longer current
    model_service.promote(api_settings, registry, store, v["second"], "tester")
    report = _prune(api_settings, store)
    why = {d["version"]: d["reasons"] for d in report["versions"]}
    assert report["deleted"] == [v["failed"]]
    assert why[v["served"]] == [f"referenced by refit {job['id']} in progress "
                                "(current when it started)"]
    assert f"referenced by refit {job['id']} in progress (saved by it, not yet promoted)" in (
        why[made.version])
    store.refits.finish(job["id"], "succeeded")
    assert _prune(api_settings, store)["deleted"] == [v["served"]]  # the newest passing: made


def test_forecast_models_prune_lists_what_it_deletes_and_why(api_settings, api_template,
                                                             served_model):
    v = api_template[2]
    runner = CliRunner()
    env = {"FORECAST_INSTANCE": str(api_settings.instance_path), "FORECAST_KEEP_PASSING": "1",
           "FORECAST_KEEP_FAILED": "0"}

    def forecast(*args):
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    dry = forecast("models", "prune", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 version (" in dry.output and "nothing was deleted" in dry.output
    assert Registry(api_settings.registry_path).has(v["failed"])
    planned = json.loads(forecast("models", "prune", "--dry-run", "--json").output)
    assert planned["dry_run"] is True and planned["deleted"] == [v["failed"]]
    [failed] = [d for d in planned["versions"] if d["version"] == v["failed"]]
    assert failed["action"] == "delete" and failed["reasons"] == [
        "failed, older than the 0 newest failed versions"]
    done = forecast("models", "prune")
    assert done.exit_code == 0, done.output
    assert f"deleted 1 version, freed {planned['bytes_freed'] / 1e6:.1f} MB" in done.output
    assert not Registry(api_settings.registry_path).has(v["failed"])
    assert [(a, d["deleted"]) for a, _, d in audit_rows(api_settings, "model:prune")] == [
        (USER, [v["failed"]])]


def test_candidate_fits_are_counted_apart_and_never_push_a_served_version_out(
        api_settings, api_template, store, served_model, fitted_version, fitted_posterior):
    v = api_template[2]
    elicited = _elicited_priors(api_settings)
    newer, older = (_save_candidate(api_settings, fitted_version, fitted_posterior, elicited,
                                    tag=tag, fitted_at=at)
                    for tag, at in (("new", "2099-01-02T00:00:00+00:00"),
                                    ("old", "2099-01-01T00:00:00+00:00")))
    report = _prune(api_settings, store)
    why = {d["version"]: d["reasons"] for d in report["versions"]}
    # without counting them apart, the newest passing version (of 1 kept) was a candidate
    assert set(report["kept"]) == {v["served"], v["second"], newer}
    assert set(report["deleted"]) == {v["failed"], older}
    assert why[v["second"]] == ["one of the 1 newest passing versions (#1)"]
    assert why[older] == ["candidate fit never served, counted apart from the served versions",
                          "passing, older than the 1 newest passing versions"]
    assert [d["candidate"] for d in report["versions"]][:3] == [True, True, False]  # newest first
    # adopted and promoted, a candidate is a served version: the served line's newest
    store.priors.save(elicited.to_dict(), elicited.content_hash, "dana", note="adopted")
    registry = Registry(api_settings.registry_path)
    model_service.promote(api_settings, registry, store, newer, "tester")
    model_service.promote(api_settings, registry, store, v["served"], "tester", "rollback")
    after = _prune(api_settings, store)
    assert after["deleted"] == [v["second"]] and newer in after["kept"]
