"""The model registry: immutable versions, atomic "current", gate-respecting promotion, lean
storage (derived groups recomputed when read), and pruning safe against readers and promotions."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import threading
import warnings
from importlib import metadata as importlib_metadata

import numpy as np
import pytest
import xarray as xr
from fixtures_registry import FAILED_REASON, derive

from forecasting.registry import (
    CURRENT_FILE,
    DERIVED_GROUPS,
    NARROWED_GROUPS,
    PACKAGES,
    GateFailedError,
    IntegrityError,
    ModelVersion,
    NoCurrentModelError,
    Registry,
    UnknownVersionError,
    VersionExistsError,
    content_id,
    derive_log_likelihood,
    derive_posterior_predictive,
    predictive_draws,
    utc_now_iso,
)


def _rounded(ds: xr.Dataset) -> xr.Dataset:
    """Float draws as a lean version stores them (float32), read back as float64."""
    return ds.assign({n: v.astype(np.float32).astype(np.float64)
                      for n, v in ds.data_vars.items() if v.dtype == np.float64})


@pytest.fixture(scope="module")
def small_tree(small_fit):
    """The session's fit, posterior only and 2 chains x 20 draws: these tests save a lot, and
    every group and draw costs h5netcdf time to write."""
    posterior = small_fit.idata["posterior"].to_dataset().isel(chain=slice(0, 2),
                                                               draw=slice(0, 20))
    tree = xr.DataTree.from_dict({"posterior": posterior})
    tree.attrs.update(small_fit.idata.attrs)
    return tree


@pytest.fixture
def save(small_fit):
    """save(registry, tree, verdict, data_hash, **metadata changes): the fit's own metadata
    (what fit_and_register hands to Registry.save), edited."""

    def save(registry, tree, verdict="pass", data_hash="data-a", **changes) -> ModelVersion:
        return registry.save(*derive(tree, small_fit.metadata(), verdict=verdict,
                                     data_hash=data_hash, **changes))

    return save


def test_content_id_is_stable_and_ignores_key_order():
    a = content_id({"x": 1, "y": [1, 2]}, "p", "d", {"draws": 10, "chains": 4})
    b = content_id({"y": [1, 2], "x": 1}, "p", "d", {"chains": 4, "draws": 10})
    assert a == b and len(a) == 12 and int(a, 16) >= 0
    assert a != content_id({"x": 1, "y": [1, 2]}, "p", "other-data", {"draws": 10, "chains": 4})


def test_a_fit_stored_in_full_loads_back_identical_with_its_identity(tmp_path, small_fit):
    """Registry(lean=False) writes versions as they were before lean storage: every group at
    full precision; such versions (and older ones) read back unchanged."""
    registry = Registry(tmp_path / "models", lean=False)
    mv = registry.save(small_fit.idata, small_fit.metadata())
    loaded = Registry(registry.root).load_posterior(mv.version)
    expected = small_fit.idata.copy()
    expected.attrs.update(version=mv.version, priors_hash=small_fit.priors_hash,
                          data_hash=small_fit.data_fingerprint)
    # every group, variable, value, dtype (integer counts, boolean flags), coord and attr
    assert loaded.identical(expected)
    assert set(loaded.children) == set(small_fit.idata.children)
    assert "version" not in small_fit.idata.attrs  # the caller's tree is left alone
    given = small_fit.metadata()
    for key in ("episodes", "data_hash", "priors_hash", "priors", "model_config", "sampler",
                "verdict", "reasons", "codebook_version"):
        assert mv.metadata[key] == json.loads(json.dumps(given[key])), key
    assert mv.metadata["diagnostics"]["max_rhat"] == pytest.approx(
        given["diagnostics"]["max_rhat"], rel=1e-12)


def test_a_lean_version_stores_neither_derived_group_and_recomputes_them_when_read(
        model_registry, small_fit):
    from forecasting.model.predictive import add_log_likelihood, replicate_counts

    mv = model_registry.save(small_fit.idata, small_fit.metadata())
    assert mv.derived_groups == ["log_likelihood", "posterior_predictive"]
    with xr.open_datatree(mv.posterior_path, engine="h5netcdf") as stored:
        assert not set(DERIVED_GROUPS) & set(stored.children)
        assert stored["posterior"]["pt_eff"].dtype == np.float32
        assert stored["sample_stats"]["energy"].dtype == np.float64  # kept exact
    loaded = model_registry.load_posterior(mv.version)
    assert set(loaded.children) == set(small_fit.idata.children)
    fit = small_fit.idata
    for group in set(fit.children) - {*NARROWED_GROUPS, *DERIVED_GROUPS}:
        assert loaded[group].to_dataset().identical(fit[group].to_dataset()), group
    for group in NARROWED_GROUPS:
        assert loaded[group].to_dataset().identical(_rounded(fit[group].to_dataset())), group
    # the log likelihood: exactly what the fit's own code computes from the stored draws, and
    # within float32 rounding of the fit's
    expected = loaded.copy()
    add_log_likelihood(expected)
    ll = loaded["log_likelihood"]["level_counts"]
    xr.testing.assert_identical(ll, expected["log_likelihood"]["level_counts"])
    np.testing.assert_allclose(ll.values, fit["log_likelihood"]["level_counts"].values,
                               rtol=1e-5, atol=1e-5)
    # replicated counts: the fit's own code, on evenly thinned draws, seeded as the fit seeds
    draws = predictive_draws(loaded["posterior"].to_dataset())
    rep = replicate_counts(draws, loaded, seed=small_fit.sampler["seed"] + 2)
    assert loaded["posterior_predictive"].to_dataset().identical(rep)
    assert loaded["posterior_predictive"].sizes["draw"] * loaded["posterior_predictive"].sizes[
        "chain"] <= 1000


def test_recomputing_in_blocks_of_draws_gives_the_same_groups(small_fit, monkeypatch):
    """At 17,000 cells the groups are recomputed a block of draws at a time (bounded memory);
    the replicated counts still come from one random stream, in order."""
    tree, meta = small_fit.idata, small_fit.metadata()
    whole = derive_log_likelihood(tree, meta), derive_posterior_predictive(tree, meta)
    monkeypatch.setattr("forecasting.registry.DERIVED_BLOCK_ELEMENTS",
                        7 * tree.observed_data.sizes["cell"])
    blocks = derive_log_likelihood(tree, meta), derive_posterior_predictive(tree, meta)
    assert whole[0].identical(blocks[0]) and whole[1].identical(blocks[1])
    np.testing.assert_array_equal(whole[0]["level_counts"].values,
                                  tree["log_likelihood"]["level_counts"].values)


def test_a_lean_version_serves_the_loo_and_forecasts_of_one_stored_in_full(tmp_path, small_fit,
                                                                          codebook):
    """What readers compute from a lean version (the log likelihood recomputed, the draws
    rounded to float32) agrees with the same fit stored whole to well under what any answer
    shows (forecasts are given to 3 decimals, elpd to 1)."""
    import arviz as az

    from forecasting.model.diagnostics import episode_loo
    from forecasting.serving.forecasts import ForecastEngine

    full = Registry(tmp_path / "full", lean=False)
    lean = Registry(tmp_path / "lean")
    version = full.save(small_fit.idata, small_fit.metadata()).version
    lean.save(small_fit.idata, small_fit.metadata())
    trees = [r.load_posterior(version) for r in (full, lean)]
    with warnings.catch_warnings():  # high Pareto k warns; compared, not judged, here
        warnings.simplefilter("ignore", UserWarning)
        cell_loo = [az.loo(tree, pointwise=True) for tree in trees]
    assert float(cell_loo[1].elpd) == pytest.approx(float(cell_loo[0].elpd), rel=1e-6)
    np.testing.assert_allclose(np.asarray(cell_loo[1].pareto_k),
                               np.asarray(cell_loo[0].pareto_k), atol=0.01)
    episode = [episode_loo(tree) for tree in trees]
    assert episode[1]["elpd"] == pytest.approx(episode[0]["elpd"], rel=1e-6)
    engines = [ForecastEngine.from_version(r, version, codebook) for r in (full, lean)]
    for partner, intel_type, severity in [("ISR", "humint", 0), ("GBR", "ct", 3),
                                          ("FRA", "sigint", 2)]:
        answers = [e.forecast(partner, intel_type, severity=severity) for e in engines]
        for key in ("mean", "median"):
            assert answers[1]["any_restriction"][key] == pytest.approx(
                answers[0]["any_restriction"][key], abs=1e-6)
        np.testing.assert_allclose(answers[1]["any_restriction"]["ci90"],
                                   answers[0]["any_restriction"]["ci90"], atol=1e-6)


def test_a_lean_version_is_less_than_half_the_size_of_a_full_one(tmp_path, small_fit):
    full = Registry(tmp_path / "full", lean=False).save(small_fit.idata, small_fit.metadata())
    lean = Registry(tmp_path / "lean").save(small_fit.idata, small_fit.metadata())
    assert lean.posterior_path.stat().st_size < full.posterior_path.stat().st_size / 2


def test_derived_groups_are_computed_once_per_process(model_registry, small_fit, monkeypatch):
    mv = model_registry.save(small_fit.idata, small_fit.metadata())
    calls = []
    real = DERIVED_GROUPS["log_likelihood"]
    monkeypatch.setitem(DERIVED_GROUPS, "log_likelihood",
                        lambda tree, meta: calls.append(1) or real(tree, meta))
    first = model_registry.load_posterior(mv.version, groups=["log_likelihood"])
    again = Registry(model_registry.root).load_posterior(mv.version, groups=["log_likelihood"])
    assert calls == [1]
    assert list(first.children) == ["log_likelihood"]  # the inputs read for it are not returned
    assert first["log_likelihood"].identical(again["log_likelihood"])


def test_a_version_with_stored_groups_is_read_without_recomputing(tmp_path, small_fit,
                                                                  monkeypatch):
    registry = Registry(tmp_path / "models", lean=False)
    mv = registry.save(small_fit.idata, small_fit.metadata())

    def refuse(tree, meta):
        raise AssertionError("recomputed a stored group")

    for group in DERIVED_GROUPS:
        monkeypatch.setitem(DERIVED_GROUPS, group, refuse)
    loaded = registry.load_posterior(mv.version, groups=["log_likelihood"])
    assert loaded["log_likelihood"].identical(small_fit.idata["log_likelihood"])


def test_loading_selected_groups_keeps_root_attrs(model_registry, small_tree, save):
    mv = save(model_registry, small_tree)
    tree = model_registry.load_posterior(mv.version, groups=["posterior"])
    assert list(tree.children) == ["posterior"]
    assert tree["posterior"].to_dataset().identical(_rounded(small_tree["posterior"].to_dataset()))
    assert tree.attrs["version"] == mv.version and tree.attrs["severity_center"] == 1.5
    with pytest.raises(KeyError, match="no group 'prior'"):
        model_registry.load_posterior(mv.version, groups=["prior"])


def test_metadata_records_identity_packages_and_verdict(model_registry, small_tree, save,
                                                        small_fit):
    before = dt.datetime.now(dt.UTC)
    mv = save(model_registry, small_tree)
    meta = json.loads((mv.path / "metadata.json").read_text())
    assert meta["version"] == mv.version == content_id(
        meta["model_config"], meta["priors_hash"], meta["data_hash"], meta["sampler"])
    installed = {}
    for name in PACKAGES:
        try:
            installed[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            installed[name] = None
    assert meta["package_versions"] == installed | {"python": platform.python_version()}
    assert meta["package_versions"]["pymc"] is not None
    assert meta["verdict"] == mv.verdict == "pass" and mv.episodes == 800
    fitted = dt.datetime.fromisoformat(mv.fitted_at)
    assert mv.fitted_at.endswith("+00:00")
    assert before - dt.timedelta(seconds=1) <= fitted <= dt.datetime.now(dt.UTC)
    assert meta["diagnostics"]["divergences"] == small_fit.diagnostics["divergences"]


def test_a_given_fitted_at_is_stored_as_the_same_instant_in_utc(model_registry, small_tree,
                                                                save):
    mv = save(model_registry, small_tree, fitted_at="2026-11-29T05:30:00.250+05:30")
    assert mv.fitted_at == "2026-11-29T00:00:00.250+00:00"
    with pytest.raises(ValueError, match="has no time zone"):
        save(model_registry, small_tree, data_hash="naive", fitted_at="2026-11-29T05:30:00")


def test_now_is_aware_utc():
    text = utc_now_iso()
    assert text.endswith("+00:00")
    now = dt.datetime.fromisoformat(text)
    assert abs(now - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)


def test_numpy_values_and_undefined_diagnostics_are_stored_as_plain_json(model_registry,
                                                                        small_tree, save):
    diagnostics = {"max_rhat": np.float64("nan"), "min_ess_bulk": np.float32(812.5),
                   "divergences": np.int64(0), "ebfmi": np.array([0.7, 0.8]), "worst": float("inf")}
    mv = save(model_registry, small_tree, diagnostics=diagnostics)
    stored = json.loads((mv.path / "metadata.json").read_text())["diagnostics"]
    assert stored == {"max_rhat": None, "min_ess_bulk": 812.5, "divergences": 0,
                      "ebfmi": [0.7, 0.8], "worst": None}


def test_versions_are_listed_newest_first(model_registry, small_tree, save):
    first = save(model_registry, small_tree, data_hash="one")
    second = save(model_registry, small_tree, data_hash="two", verdict="fail")
    assert [v.version for v in model_registry.versions()] == [second.version, first.version]


def test_saving_an_existing_version_is_refused(model_registry, small_tree, save):
    save(model_registry, small_tree)
    with pytest.raises(VersionExistsError, match="already exists"):
        save(model_registry, small_tree)


def test_a_version_that_is_not_the_content_id_is_refused(model_registry, small_tree, save):
    with pytest.raises(ValueError, match="not the content id"):
        save(model_registry, small_tree, version="chosen-by-hand")


def test_metadata_missing_required_keys_is_refused(model_registry, small_tree, save,
                                                   small_fit):
    meta = small_fit.metadata()
    del meta["data_hash"]
    with pytest.raises(ValueError, match="lacks \\['data_hash'\\]"):
        model_registry.save(small_tree, meta)
    with pytest.raises(ValueError, match="verdict"):
        save(model_registry, small_tree, verdict="maybe")
    with pytest.raises(ValueError, match="no 'posterior' group"):
        model_registry.save(xr.DataTree(), small_fit.metadata())
    assert model_registry.versions() == []


def test_no_current_model_until_one_is_promoted(model_registry, small_tree, save):
    assert model_registry.current_or_none() is None
    with pytest.raises(NoCurrentModelError, match="forecast promote"):
        model_registry.current()
    mv = save(model_registry, small_tree)
    assert model_registry.current_or_none() is None  # saving never promotes
    model_registry.promote(mv.version)
    assert model_registry.current() == mv == model_registry.get("current")


def test_a_failed_version_is_kept_but_cannot_be_promoted(model_registry, small_tree, save):
    failed = save(model_registry, small_tree, verdict="fail")
    assert model_registry.get(failed.version).verdict == "fail"
    with pytest.raises(GateFailedError, match=re.escape(FAILED_REASON)):
        model_registry.promote(failed.version)
    assert model_registry.current_or_none() is None


def test_promoting_an_earlier_passing_version_rolls_back(model_registry, small_tree, save):
    old = save(model_registry, small_tree, data_hash="old")
    new = save(model_registry, small_tree, data_hash="new")
    model_registry.promote(old.version)
    model_registry.promote(new.version)
    assert model_registry.current().version == new.version
    model_registry.promote(old.version)
    assert model_registry.current().version == old.version


def test_current_is_switched_by_an_atomic_replace(model_registry, small_tree, monkeypatch, save):
    old = save(model_registry, small_tree, data_hash="old")
    new = save(model_registry, small_tree, data_hash="new")
    model_registry.promote(old.version)
    calls = []
    real_replace = os.replace

    def spy(src, dst):
        calls.append((os.path.basename(src), os.path.basename(dst)))
        assert model_registry.current().version == old.version  # readers still see the old one
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    model_registry.promote(new.version)
    assert len(calls) == 1 and calls[0][1] == CURRENT_FILE and calls[0][0].startswith(".tmp-")
    assert model_registry.current().version == new.version
    assert not list(model_registry.root.glob(".tmp-*"))


def test_unknown_version_is_an_error_naming_it(model_registry, small_tree, save):
    mv = save(model_registry, small_tree)
    for bad in ("0123456789ab", "../etc", ""):
        with pytest.raises(UnknownVersionError, match="unknown model version") as info:
            model_registry.get(bad)
        assert mv.version in str(info.value) or bad == ""
    with pytest.raises(UnknownVersionError):
        model_registry.promote("0123456789ab")
    with pytest.raises(UnknownVersionError):
        model_registry.load_posterior("0123456789ab")


def test_an_interrupted_save_is_never_listed_and_is_cleaned_up(model_registry, small_tree, save):
    model_registry.root.mkdir(parents=True)
    leftover = model_registry.root / ".tmp-killed"
    leftover.mkdir()
    (leftover / "posterior.nc").write_bytes(b"half a file")
    assert model_registry.versions() == []
    save(model_registry, small_tree)
    assert not leftover.exists()
    assert len(model_registry.versions()) == 1


KILLED_SAVE = """
import sys, time
import numpy as np, xarray as xr
from forecasting.registry import Registry

def stalled_write(tree, path, **kwargs):
    open(path, "wb").write(b"partial")
    print("writing", flush=True)
    time.sleep(60)

xr.DataTree.to_netcdf = stalled_write
posterior = xr.Dataset({"x": (("chain", "draw"), np.zeros((1, 2)))})
tree = xr.DataTree.from_dict({"posterior": posterior})
meta = {"episodes": 1, "data_hash": "d", "priors_hash": "p", "model_config": {}, "sampler": {},
        "verdict": "pass"}
Registry(sys.argv[1]).save(tree, meta)
"""


def test_a_save_killed_mid_write_leaves_no_version_and_its_lock_is_released(model_registry,
                                                                            small_tree, save):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(model_registry.root)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.kill()  # SIGKILL: no cleanup handler runs
        proc.wait()
        proc.stdout.close()
    assert len(list(model_registry.root.glob(".tmp-*"))) == 1
    assert model_registry.versions() == []
    save(model_registry, small_tree)  # would block forever if the dead process held the lock
    assert not list(model_registry.root.glob(".tmp-*"))
    assert len(model_registry.versions()) == 1


def test_a_failed_write_leaves_nothing_behind(model_registry, small_tree, monkeypatch, save):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        save(model_registry, small_tree)
    assert model_registry.versions() == []
    assert not list(model_registry.root.glob(".tmp-*"))


def test_a_tree_whose_identity_was_tampered_with_is_refused(model_registry, small_tree, save):
    mv = save(model_registry, small_tree)
    tampered = model_registry.load_posterior(mv.version)
    tampered.attrs["data_hash"] = "someone-elses-data"
    tampered.to_netcdf(mv.posterior_path, engine="h5netcdf", mode="w")
    meta = json.loads((mv.path / "metadata.json").read_text())
    meta.pop("posterior_sha256")  # even without the checksum, the identity check catches it
    (mv.path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match="data_hash"):
        model_registry.load_posterior(mv.version)
    with pytest.raises(IntegrityError, match="data_hash"):
        model_registry.load_posterior(mv.version, groups=["posterior"])


def test_a_changed_posterior_file_fails_its_checksum(model_registry, small_tree, save):
    mv = save(model_registry, small_tree)
    changed = model_registry.load_posterior(mv.version)
    changed["posterior"]["beta_severity"] = changed["posterior"]["beta_severity"] + 1.0
    changed.to_netcdf(mv.posterior_path, engine="h5netcdf", mode="w")
    with pytest.raises(IntegrityError, match="checksum"):
        model_registry.load_posterior(mv.version)


def test_a_huge_posterior_predictive_is_not_stored_and_is_recomputed_when_read(tmp_path,
                                                                               small_fit):
    registry = Registry(tmp_path / "models", max_predictive_bytes=1000, lean=False)
    mv = registry.save(small_fit.idata, small_fit.metadata())
    assert mv.metadata["dropped_groups"] == ["posterior_predictive"]
    with xr.open_datatree(mv.posterior_path, engine="h5netcdf") as stored:
        assert "posterior_predictive" not in stored.children
    loaded = registry.load_posterior(mv.version)
    assert set(loaded.children) == set(small_fit.idata.children)
    assert loaded["observed_data"].identical(small_fit.idata["observed_data"])


def test_registry_with_current_fixture_serves_the_sessions_fit(registry_with_current, tmp_path,
                                                                small_fit):
    current = registry_with_current.current()
    assert current.verdict == small_fit.verdict.verdict == "pass"
    assert registry_with_current.root == tmp_path / "models"
    assert (current.metadata["data_hash"], current.metadata["priors_hash"]) == (
        small_fit.data_fingerprint, small_fit.priors_hash)
    stored = registry_with_current.load_posterior("current", groups=["posterior"])
    assert stored.attrs["version"] == current.version
    assert stored["posterior"].to_dataset().identical(
        _rounded(small_fit.idata["posterior"].to_dataset()))


def test_simulated_counts_are_stored_compressed_and_load_back_identical(model_registry,
                                                                       small_tree, save):
    """Integer groups (prior predictive counts per cell and level) shrink many times over;
    at 17,000 cells they would otherwise be ~270 MB a version."""
    counts = np.random.default_rng(0).binomial(2, 0.05, size=(1, 500, 2000, 4))
    tree = small_tree.copy()
    tree["prior_predictive"] = xr.DataTree(xr.Dataset(
        {"level_counts": (("chain", "draw", "cell", "level"), counts)}))
    mv = save(model_registry, tree)
    assert mv.posterior_path.stat().st_size < counts.nbytes / 10
    loaded = model_registry.load_posterior(mv.version, groups=["prior_predictive"])
    assert loaded["prior_predictive"]["level_counts"].dtype == counts.dtype
    np.testing.assert_array_equal(loaded["prior_predictive"]["level_counts"].values, counts)


# -- pruning -------------------------------------------------------------------------------------


@pytest.fixture
def history(model_registry, small_tree, save):
    """Seven versions fitted a day apart, oldest first: passing p1..p4 and failed f1..f3
    interleaved (p1 f1 p2 f2 p3 f3 p4); p1 (the oldest) is current, as after a rollback."""
    names = ["p1", "f1", "p2", "f2", "p3", "f3", "p4"]
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    versions = {name: save(model_registry, small_tree, verdict="pass" if name[0] == "p" else "fail",
                           data_hash=f"data-{name}",
                           fitted_at=(start + dt.timedelta(days=i)).isoformat()).version
                for i, name in enumerate(names)}
    model_registry.promote(versions["p1"])
    return versions


def _kept(registry):
    return {v.version for v in registry.versions()}


def test_prune_keeps_the_current_the_newest_passing_and_failed_and_the_referenced(
        model_registry, history):
    v = history
    decisions = model_registry.prune(keep_passing=1, keep_failed=1,
                                     referenced={v["p2"]: ["ledger entry 7"]})
    assert _kept(model_registry) == {v["p1"], v["p2"], v["p4"], v["f3"]}
    why = {d.version: (d.keep, d.reasons) for d in decisions}
    assert why[v["p1"]] == (True, ["current"])
    assert why[v["p2"]] == (True, ["referenced by ledger entry 7"])
    assert why[v["p4"]] == (True, ["one of the 1 newest passing versions (#1)"])
    assert why[v["f3"]] == (True, ["one of the 1 newest failed versions (#1)"])
    assert why[v["p3"]] == (False, ["passing, older than the 1 newest passing versions"])
    assert why[v["f1"]][0] is why[v["f2"]][0] is False
    assert all(d.bytes > 10_000 for d in decisions)
    assert model_registry.current().version == v["p1"]
    assert not list(model_registry.root.glob(".tmp-*"))  # nothing left aside


def test_prune_counts_the_current_version_among_the_newest_passing(model_registry, history):
    v = history
    model_registry.promote(v["p4"])
    model_registry.prune(keep_passing=2, keep_failed=0)
    assert _kept(model_registry) == {v["p4"], v["p3"]}


def test_versions_counted_apart_have_windows_of_their_own(model_registry, history):
    """p4 and f3, the newest of each verdict, counted apart (as the workbench's candidate
    fits are): they fill their own windows, and p3 and f2 are the others' newest."""
    v = history
    why_apart = "scratch, counted apart"
    decisions = model_registry.prune(keep_passing=1, keep_failed=1,
                                     apart={v["p4"]: why_apart, v["f3"]: why_apart})
    assert _kept(model_registry) == {v["p1"], v["p3"], v["p4"], v["f2"], v["f3"]}
    why = {d.version: (d.keep, d.reasons) for d in decisions}
    assert why[v["p4"]] == (True, [why_apart, "one of the 1 newest passing versions (#1)"])
    assert why[v["p3"]] == (True, ["one of the 1 newest passing versions (#1)"])
    assert why[v["f2"]] == (True, ["one of the 1 newest failed versions (#1)"])
    assert [d.version for d in decisions] == [v[n] for n in
                                              ("p4", "f3", "p3", "f2", "p2", "f1", "p1")]
    # counted with the others, p4 and f3 would push p3 and f2 out
    plain = model_registry.plan_prune(keep_passing=1, keep_failed=1)
    assert {d.version for d in plain if not d.keep} == {v["p3"], v["f2"]}


def test_a_dry_run_deletes_nothing_and_says_what_a_prune_would(model_registry, history):
    before = _kept(model_registry)
    planned = model_registry.prune(keep_passing=1, keep_failed=0, dry_run=True)
    assert _kept(model_registry) == before and len(before) == 7
    done = model_registry.prune(keep_passing=1, keep_failed=0)
    assert planned == done
    assert _kept(model_registry) == {d.version for d in done if d.keep}


def test_a_policy_that_is_not_a_count_is_refused(model_registry, history):
    with pytest.raises(ValueError, match="keep_passing: -1 must be a whole number >= 0"):
        model_registry.prune(keep_passing=-1, keep_failed=0)
    with pytest.raises(ValueError, match="keep_failed: 1.5"):
        model_registry.prune(keep_passing=1, keep_failed=1.5)
    assert len(_kept(model_registry)) == 7


def test_a_version_being_read_is_kept_until_the_reader_lets_go(model_registry, history):
    v = history
    with model_registry.reading(v["p3"]):
        decisions = model_registry.prune(keep_passing=1, keep_failed=3)
        assert v["p3"] in _kept(model_registry) and v["p2"] not in _kept(model_registry)
        assert [d.reasons for d in decisions if d.version == v["p3"]] == [
            ["being read (kept this time; pruned by a later run)"]]
        assert model_registry.load_posterior(v["p3"], groups=["posterior"])  # still whole
    model_registry.prune(keep_passing=1, keep_failed=3)
    assert v["p3"] not in _kept(model_registry)


def test_a_version_is_renamed_aside_before_it_is_deleted(model_registry, history, monkeypatch):
    renames = []
    real_rename = os.rename

    def spy(src, dst):
        renames.append((os.path.basename(src), os.path.basename(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", spy)
    model_registry.prune(keep_passing=4, keep_failed=2)
    assert [src for src, _ in renames] == [history["f1"]]
    assert renames[0][1].startswith(".tmp-pruned-")
    with pytest.raises(UnknownVersionError):
        model_registry.load_posterior(history["f1"])


def test_a_reader_of_a_version_pruned_under_it_gets_unknown_version(model_registry, history):
    """Between looking a version up and opening it, a prune may take it: the reader is told
    the version is unknown, never handed half a version."""
    mv = model_registry.get(history["p2"])
    real_get = model_registry.get

    def get_then_prune(version):
        found = real_get(version)
        model_registry.prune(keep_passing=1, keep_failed=0)
        return found

    model_registry.get = get_then_prune
    with pytest.raises(UnknownVersionError, match=mv.version):
        model_registry.load_posterior(mv.version)


def _promote_while_pruning(root, version) -> bool:
    """Promote `version` and prune (keep 1 passing) at once in two threads; True if the
    promotion found the version gone."""
    barrier = threading.Barrier(2)
    gone = []

    def promote():
        barrier.wait()
        try:
            Registry(root).promote(version)
        except UnknownVersionError:
            gone.append(version)

    def prune():
        barrier.wait()
        Registry(root).prune(keep_passing=1, keep_failed=0)

    threads = [threading.Thread(target=promote), threading.Thread(target=prune)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return bool(gone)


def test_a_promotion_racing_a_prune_never_leaves_current_naming_a_missing_version(
        model_registry, small_tree, save):
    """The policy would delete `old` unless it is current; promote it while pruning, many
    times: either the promotion wins (and `old` is kept, current) or the prune does (and the
    promotion fails as for any unknown version, leaving the previous current)."""
    new = save(model_registry, small_tree, data_hash="new", fitted_at="2026-02-01T00:00:00+00:00")
    model_registry.promote(new.version)
    for _ in range(12):
        old = save(model_registry, small_tree, data_hash="old",
                   fitted_at="2026-01-01T00:00:00+00:00")
        lost = _promote_while_pruning(model_registry.root, old.version)
        current = model_registry.current()  # raises if CURRENT names a missing version
        if lost:
            assert current.version == new.version and not model_registry.has(old.version)
        else:
            assert current.version == old.version and model_registry.has(old.version)
            model_registry.promote(new.version)
            model_registry.prune(keep_passing=1, keep_failed=0)
    assert not list(model_registry.root.glob(".tmp-*"))
