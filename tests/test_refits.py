import gc
import weakref
from dataclasses import replace

import pytest
from fixtures_api import audit_rows, auth
from fixtures_registry import FAILED_REASON, derive, fit_metadata
from helpers import episode_row
from huey import MemoryHuey
from huey.exceptions import RetryTask

from forecasting.domain.codebook import load_codebook
from forecasting.domain.episodes import validate_episodes
from forecasting.refits import RefitService, make_huey, model_status
from forecasting.registry import Registry
from forecasting.services.fits import FitOutcome
from forecasting.services.setup import initialise
from forecasting.settings import RetentionPolicy
from forecasting.store import connect


class FakeFitter:
    """Stands in for a real fit: stores a version derived from the session's fit with the
    verdict asked for; as the worker's real fit, it does not promote (the worker does)."""

    def __init__(self, fitted_version, posterior, verdict="pass", error=None):
        self.tree, self.meta = posterior, fit_metadata(fitted_version)
        self.verdict, self.error, self.calls = verdict, error, 0

    def __call__(self, settings, database, registry, codebook):
        self.calls += 1
        if self.error:
            raise self.error
        tree, meta = derive(self.tree, self.meta, verdict=self.verdict,
                            data_hash=f"data-{self.calls}-{self.verdict}",
                            episodes=database.episodes.count(),
                            store_revision=database.episodes.latest_revision_id(),
                            prior_set_id=None)
        version = registry.save(tree, meta)
        return FitOutcome(version=version, promoted=False, reused=False, result=None)


@pytest.fixture
def fake_fitter(fitted_version, fitted_posterior):
    """FakeFitter(verdict="pass", error=None) with the session's fit to derive from."""
    return lambda **kwargs: FakeFitter(fitted_version, fitted_posterior, **kwargs)


@pytest.fixture
def up_to_date_model(api_settings, fitted_version, fitted_posterior):
    """A passing version, current, fitted on exactly this instance's episodes and priors
    (the template's served version saw another database's episodes)."""
    database = connect(api_settings.database_url)
    tree, meta = derive(fitted_posterior, fit_metadata(fitted_version), data_hash="data-now",
                        episodes=database.episodes.count(), prior_set_id=None,
                        store_revision=database.episodes.latest_revision_id())
    database.dispose()
    registry = Registry(api_settings.registry_path)
    return registry.promote(registry.save(tree, meta).version)


@pytest.fixture
def service(api_settings, up_to_date_model, fake_fitter):
    database = initialise(api_settings)
    svc = RefitService(settings=api_settings, database=database,
                       registry=Registry(api_settings.registry_path),
                       codebook=load_codebook(api_settings.codebook_path),
                       huey=MemoryHuey("test-refits"), fit=fake_fitter())
    yield svc
    database.dispose()


def _add_episode(database, codebook, **fields):
    rows = [episode_row(partner="GBR", intel_type="ct", **fields)]
    database.episodes.import_episodes(validate_episodes(list(enumerate(rows, 2)), codebook),
                                      actor="coder", codebook_version=codebook.version)


def test_a_burst_of_changes_queues_one_refit(service):
    first = service.request("episodes", "coder")
    for _ in range(49):
        service.request("episodes", "coder")
    queued = service.database.refits.list(status="queued")
    assert len(queued) == 1 and queued[0]["id"] == first["id"]
    assert queued[0]["coalesced"] == 49
    assert service.huey.pending_count() + service.huey.scheduled_count() == 1


def test_a_passing_refit_is_promoted_and_recorded(service, codebook, api_settings):
    before = service.registry.current().version
    _add_episode(service.database, codebook)
    assert model_status(service.database, service.registry)["stale"] is True
    job = service.request("episodes", "coder", delay=0)
    done = service.run(job["id"])
    assert done["status"] == "succeeded" and done["promoted"] is True
    assert done["episodes"] == 9 and done["duration_s"] is not None
    assert service.registry.current().version == done["version"] != before
    assert model_status(service.database, service.registry)["stale"] is False
    # the promotion is audited like one made by hand: who, which version replaced which, why
    assert audit_rows(api_settings, "model:promote") == [("refit-worker", "model:promote", {
        "version": done["version"], "previous": before,
        "reason": f"refit {job['id']} (episodes, requested by coder) passed its diagnostics "
                  "gate"})]


def test_a_failing_refit_never_replaces_the_current_version(service, codebook, fake_fitter,
                                                            api_settings):
    service.fit = fake_fitter(verdict="fail")
    before = service.registry.current().version
    _add_episode(service.database, codebook)
    done = service.run(service.request("episodes", "coder", delay=0)["id"])
    assert done["status"] == "failed" and done["verdict"] == "fail"
    assert done["detail"]["reasons"] == [FAILED_REASON]
    assert service.registry.current().version == before
    status = model_status(service.database, service.registry)
    assert status["stale"] is True and status["stale_since"] is not None
    assert audit_rows(api_settings, "model:promote") == []


class _Cycle:
    """Stands in for what a real fit leaves: a posterior DataTree (parents and children refer
    to each other) and a PyTensor graph are reference cycles."""

    def __init__(self):
        self.itself = self


@pytest.mark.parametrize("verdict", ["pass", "fail"])
def test_a_refit_frees_what_its_fit_left_in_reference_cycles(service, codebook, fake_fitter,
                                                             verdict):
    fitter, left = fake_fitter(verdict=verdict), []

    def fit_leaving_a_cycle(*args):
        cycle = _Cycle()
        left.append(weakref.ref(cycle))
        return replace(fitter(*args), result=cycle)

    service.fit = fit_leaving_a_cycle
    _add_episode(service.database, codebook)
    job = service.request("episodes", "coder", delay=0)
    gc.disable()  # only the worker's own collection may free it, as in a worker whose
    try:          # full collections come every few dozen refits
        done = service.run(job["id"])
    finally:
        gc.enable()
    assert done["verdict"] == verdict
    assert left[0]() is None, "the fit's objects outlived the refit: a worker grows refit by refit"


@pytest.mark.parametrize("prune_after_refit", [True, False])
def test_a_promoted_refit_prunes_by_the_retention_policy_when_set(service, codebook,
                                                                  api_settings,
                                                                  prune_after_refit):
    service.settings = replace(service.settings, retention=RetentionPolicy(
        keep_passing=1, keep_failed=0, prune_after_refit=prune_after_refit))
    before = {v.version for v in service.registry.versions()}
    _add_episode(service.database, codebook)
    job = service.request("episodes", "coder", delay=0)
    done = service.run(job["id"])
    assert done["status"] == "succeeded" and done["promoted"] is True
    left = {v.version for v in service.registry.versions()}
    pruned = audit_rows(api_settings, "model:prune")
    if prune_after_refit:  # the new current one is also the newest passing: all else goes
        assert left == {done["version"]}
        assert pruned == [("refit-worker", "model:prune", {
            "deleted": pruned[0][2]["deleted"], "bytes_freed": pruned[0][2]["bytes_freed"],
            "policy": {"keep_passing": 1, "keep_failed": 0},
            "reason": f"after refit {job['id']} was promoted"})]
        assert set(pruned[0][2]["deleted"]) == before
    else:
        assert left == before | {done["version"]} and pruned == []


def test_a_failed_refit_prunes_nothing_and_a_failed_prune_fails_no_refit(
        service, codebook, fake_fitter, monkeypatch):
    service.settings = replace(service.settings, retention=RetentionPolicy(
        keep_passing=1, keep_failed=0, prune_after_refit=True))
    service.fit = fake_fitter(verdict="fail")
    before = {v.version for v in service.registry.versions()}
    _add_episode(service.database, codebook)
    failed = service.run(service.request("episodes", "coder", delay=0)["id"])
    assert failed["status"] == "failed"
    assert {v.version for v in service.registry.versions()} == before | {failed["version"]}

    def broken(*args, **kwargs):
        raise OSError("read-only file system")

    monkeypatch.setattr(service.registry, "prune", broken)
    service.fit = fake_fitter(verdict="pass")
    done = service.run(service.request("manual", "modeler", delay=0)["id"])
    assert done["status"] == "succeeded" and done["promoted"] is True


def test_nothing_to_do_is_skipped_without_fitting(service, codebook):
    _add_episode(service.database, codebook)
    service.run(service.request("manual", "modeler", delay=0)["id"])
    again = service.run(service.request("manual", "modeler", delay=0)["id"])
    assert again["status"] == "skipped" and service.fit.calls == 1


def test_only_one_refit_runs_at_a_time(service, codebook):
    _add_episode(service.database, codebook)
    first = service.request("episodes", "coder", delay=0)
    assert service.database.refits.claim(first["id"], "other-worker", 60) == "claimed"
    second = service.request("episodes", "coder", delay=0)
    with pytest.raises(RetryTask):
        service.run(second["id"])
    assert service.database.refits.get(second["id"])["status"] == "queued"


def test_a_killed_worker_leaves_no_version_and_its_job_is_retried(service, codebook):
    _add_episode(service.database, codebook)
    versions_before = {v.version for v in service.registry.versions()}
    job = service.request("episodes", "coder", delay=0)
    # a worker claimed the job, then died (kill -9): no heartbeat since, no version written
    assert service.database.refits.claim(job["id"], "dead-worker", 60) == "claimed"
    (service.registry.root / ".tmp-partial").mkdir()  # what a save cut short leaves
    assert service.sweep() == [], "a fresh heartbeat is a live worker"
    service.settings = replace(service.settings, refit_stale_after_seconds=0.0)
    assert service.sweep() == [job["id"]]
    assert {v.version for v in service.registry.versions()} == versions_before
    service.settings = replace(service.settings, refit_stale_after_seconds=60.0)
    done = service.run(job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 2


def test_a_fit_that_raises_is_retried_then_given_up(service, codebook, fake_fitter):
    service.fit = fake_fitter(error=RuntimeError("out of memory"))
    _add_episode(service.database, codebook)
    job = service.request("episodes", "coder", delay=0)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            service.run(job["id"])
        assert service.database.refits.get(job["id"])["status"] == "queued"
    final = service.run(job["id"])
    assert final["status"] == "error" and "out of memory" in final["detail"]["error"]


def test_unknown_reason_and_bad_queue_url_are_refused(service, api_settings):
    with pytest.raises(ValueError, match="must be one of"):
        service.request("whim", "x")
    with pytest.raises(ValueError, match="use a redis:// URL"):
        make_huey(replace(api_settings, queue_url="amqp://localhost"))


def test_refit_status_and_manual_refits_over_http(client, tokens, served_model):
    assert client.post("/v1/refits").status_code == 401
    assert client.post("/v1/refits", headers=auth(tokens["coder"])).status_code == 403
    r = client.post("/v1/refits", headers=auth(tokens["modeler"]))
    assert r.status_code == 202 and r.get_json()["reason"] == "manual"
    status = client.get("/v1/refits").get_json()
    assert status["current_version"] == served_model.version
    assert [j["id"] for j in status["queued"]] == [r.get_json()["id"]]
    assert client.get(f"/v1/refits/{r.get_json()['id']}").get_json()["status"] == "queued"
    assert client.get("/v1/refits/9999").status_code == 404


def test_posting_episodes_marks_the_model_stale_and_queues_one_refit(client, tokens,
                                                                    up_to_date_model):
    assert client.get("/v1/refits").get_json()["stale"] is False
    row = {**episode_row(partner="GBR", intel_type="ct"), "severity": 3, "alignment": 1,
           "level": 3}
    body = client.post("/v1/episodes", json=row, headers=auth(tokens["coder"])).get_json()
    assert body["refit"]["status"] == "queued"
    row2 = {**row, "partner": "CAN"}
    body2 = client.post("/v1/episodes", json=row2, headers=auth(tokens["coder"])).get_json()
    assert body2["refit"]["id"] == body["refit"]["id"]
    status = client.get("/v1/refits").get_json()
    assert status["stale"] is True and status["stale_since"] is not None
    assert len(status["queued"]) == 1


def test_redis_queue_delivers_jobs(api_settings, fake_fitter):
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/15").ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"no Redis server at 127.0.0.1:6379 ({exc})")

    huey = make_huey(replace(api_settings, queue_url="redis://127.0.0.1:6379/15"))
    huey.flush()
    database = initialise(api_settings)
    svc = RefitService(settings=api_settings, database=database,
                       registry=Registry(api_settings.registry_path),
                       codebook=load_codebook(api_settings.codebook_path), huey=huey,
                       fit=fake_fitter())
    job = svc.request("manual", "modeler", delay=0)
    assert huey.scheduled_count() + huey.pending_count() == 1
    task = (huey.scheduled() or huey.pending())[0]
    assert task.args == (job["id"],)
    huey.flush()
    database.dispose()
