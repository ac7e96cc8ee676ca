"""The model registry: immutable versions, atomic "current", gate-respecting promotion."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata as importlib_metadata

import numpy as np
import pytest
import xarray as xr
from fixtures_registry import FAILED_REASON, derive

from forecasting.registry import (
    CURRENT_FILE,
    PACKAGES,
    GateFailedError,
    IntegrityError,
    ModelVersion,
    NoCurrentModelError,
    Registry,
    UnknownVersionError,
    VersionExistsError,
    content_id,
    utc_now_iso,
)


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


def test_a_fit_loads_back_identical_with_its_identity(model_registry, small_fit):
    mv = model_registry.save(small_fit.idata, small_fit.metadata())
    loaded = Registry(model_registry.root).load_posterior(mv.version)
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


def test_loading_selected_groups_keeps_root_attrs(model_registry, small_tree, save):
    mv = save(model_registry, small_tree)
    tree = model_registry.load_posterior(mv.version, groups=["posterior"])
    assert list(tree.children) == ["posterior"]
    assert tree["posterior"].to_dataset().identical(small_tree["posterior"].to_dataset())
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


def test_a_huge_posterior_predictive_is_not_stored(tmp_path, small_fit):
    registry = Registry(tmp_path / "models", max_predictive_bytes=1000)
    mv = registry.save(small_fit.idata, small_fit.metadata())
    assert mv.metadata["dropped_groups"] == ["posterior_predictive"]
    stored = registry.load_posterior(mv.version)
    assert set(stored.children) == set(small_fit.idata.children) - {"posterior_predictive"}
    assert stored["observed_data"].identical(small_fit.idata["observed_data"])


def test_registry_with_current_fixture_serves_the_sessions_fit(registry_with_current, tmp_path,
                                                                small_fit):
    current = registry_with_current.current()
    assert current.verdict == small_fit.verdict.verdict == "pass"
    assert registry_with_current.root == tmp_path / "models"
    assert (current.metadata["data_hash"], current.metadata["priors_hash"]) == (
        small_fit.data_fingerprint, small_fit.priors_hash)
    stored = registry_with_current.load_posterior("current", groups=["posterior"])
    assert stored.attrs["version"] == current.version
    assert stored["posterior"].to_dataset().identical(small_fit.idata["posterior"].to_dataset())


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
