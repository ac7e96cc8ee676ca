"""The model registry: immutable versions, atomic "current", gate-respecting promotion."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from fixtures_registry import fabricate_posterior, fake_metadata

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
)


@pytest.fixture(scope="module")
def small_tree(codebook):
    # posterior only: each extra group costs h5netcdf ~0.1 s to write, and these tests save a lot
    return fabricate_posterior(codebook, chains=2, draws=20, with_diagnostic_groups=False)


def save(registry, tree, verdict="pass", data_hash="data-a", **overrides) -> ModelVersion:
    return registry.save(tree, fake_metadata(verdict, data_hash=data_hash, **overrides))


def test_content_id_is_stable_and_ignores_key_order():
    a = content_id({"x": 1, "y": [1, 2]}, "p", "d", {"draws": 10, "chains": 4})
    b = content_id({"y": [1, 2], "x": 1}, "p", "d", {"chains": 4, "draws": 10})
    assert a == b and len(a) == 12 and int(a, 16) >= 0
    assert a != content_id({"x": 1, "y": [1, 2]}, "p", "other-data", {"draws": 10, "chains": 4})


def test_saved_tree_loads_back_identical_with_its_identity(model_registry, fake_posterior):
    mv = model_registry.save(fake_posterior, fake_metadata())
    loaded = model_registry.load_posterior(mv.version)
    expected = fake_posterior.copy()
    expected.attrs.update(version=mv.version, priors_hash="priors-0001", data_hash="data-0001")
    assert loaded.identical(expected)
    assert "version" not in fake_posterior.attrs  # the caller's tree is left alone


def test_loading_selected_groups_keeps_root_attrs(model_registry, small_tree):
    mv = save(model_registry, small_tree)
    tree = model_registry.load_posterior(mv.version, groups=["posterior"])
    assert list(tree.children) == ["posterior"]
    assert tree["posterior"].to_dataset().identical(small_tree["posterior"].to_dataset())
    assert tree.attrs["version"] == mv.version and tree.attrs["severity_center"] == 1.5
    with pytest.raises(KeyError, match="no group 'prior'"):
        model_registry.load_posterior(mv.version, groups=["prior"])


def test_metadata_records_identity_packages_and_verdict(model_registry, small_tree):
    mv = save(model_registry, small_tree)
    meta = json.loads((mv.path / "metadata.json").read_text())
    assert meta["version"] == mv.version == content_id(
        meta["model_config"], meta["priors_hash"], meta["data_hash"], meta["sampler"])
    assert set(PACKAGES) | {"python"} <= set(meta["package_versions"])
    assert meta["verdict"] == mv.verdict == "pass" and mv.episodes == 412
    assert mv.fitted_at.endswith("+00:00")
    assert meta["diagnostics"]["divergences"] == 0


def test_numpy_values_and_undefined_diagnostics_are_stored_as_plain_json(model_registry,
                                                                        small_tree):
    diagnostics = {"max_rhat": np.float64("nan"), "min_ess_bulk": np.float32(812.5),
                   "divergences": np.int64(0), "ebfmi": np.array([0.7, 0.8]), "worst": float("inf")}
    mv = save(model_registry, small_tree, diagnostics=diagnostics)
    stored = json.loads((mv.path / "metadata.json").read_text())["diagnostics"]
    assert stored == {"max_rhat": None, "min_ess_bulk": 812.5, "divergences": 0,
                      "ebfmi": [0.7, 0.8], "worst": None}


def test_versions_are_listed_newest_first(model_registry, small_tree):
    first = save(model_registry, small_tree, data_hash="one")
    second = save(model_registry, small_tree, data_hash="two", verdict="fail")
    assert [v.version for v in model_registry.versions()] == [second.version, first.version]


def test_saving_an_existing_version_is_refused(model_registry, small_tree):
    save(model_registry, small_tree)
    with pytest.raises(VersionExistsError, match="already exists"):
        save(model_registry, small_tree)


def test_a_version_that_is_not_the_content_id_is_refused(model_registry, small_tree):
    with pytest.raises(ValueError, match="not the content id"):
        save(model_registry, small_tree, version="chosen-by-hand")


def test_metadata_missing_required_keys_is_refused(model_registry, small_tree):
    meta = fake_metadata()
    del meta["data_hash"]
    with pytest.raises(ValueError, match="lacks \\['data_hash'\\]"):
        model_registry.save(small_tree, meta)
    with pytest.raises(ValueError, match="verdict"):
        save(model_registry, small_tree, verdict="maybe")
    with pytest.raises(ValueError, match="no 'posterior' group"):
        model_registry.save(xr.DataTree(), fake_metadata())
    assert model_registry.versions() == []


def test_no_current_model_until_one_is_promoted(model_registry, small_tree):
    assert model_registry.current_or_none() is None
    with pytest.raises(NoCurrentModelError, match="forecast promote"):
        model_registry.current()
    mv = save(model_registry, small_tree)
    assert model_registry.current_or_none() is None  # saving never promotes
    model_registry.promote(mv.version)
    assert model_registry.current() == mv == model_registry.get("current")


def test_a_failed_version_is_kept_but_cannot_be_promoted(model_registry, small_tree):
    failed = save(model_registry, small_tree, verdict="fail")
    assert model_registry.get(failed.version).verdict == "fail"
    with pytest.raises(GateFailedError, match="max_rhat 1.05"):
        model_registry.promote(failed.version)
    assert model_registry.current_or_none() is None


def test_promoting_an_earlier_passing_version_rolls_back(model_registry, small_tree):
    old = save(model_registry, small_tree, data_hash="old")
    new = save(model_registry, small_tree, data_hash="new")
    model_registry.promote(old.version)
    model_registry.promote(new.version)
    assert model_registry.current().version == new.version
    model_registry.promote(old.version)
    assert model_registry.current().version == old.version


def test_current_is_switched_by_an_atomic_replace(model_registry, small_tree, monkeypatch):
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


def test_unknown_version_is_an_error_naming_it(model_registry, small_tree):
    mv = save(model_registry, small_tree)
    for bad in ("0123456789ab", "../etc", ""):
        with pytest.raises(UnknownVersionError, match="unknown model version") as info:
            model_registry.get(bad)
        assert mv.version in str(info.value) or bad == ""
    with pytest.raises(UnknownVersionError):
        model_registry.promote("0123456789ab")
    with pytest.raises(UnknownVersionError):
        model_registry.load_posterior("0123456789ab")


def test_an_interrupted_save_is_never_listed_and_is_cleaned_up(model_registry, small_tree):
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
                                                                            small_tree):
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


def test_a_failed_write_leaves_nothing_behind(model_registry, small_tree, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        save(model_registry, small_tree)
    assert model_registry.versions() == []
    assert not list(model_registry.root.glob(".tmp-*"))


def test_a_tree_whose_identity_was_tampered_with_is_refused(model_registry, small_tree):
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


def test_a_changed_posterior_file_fails_its_checksum(model_registry, small_tree):
    mv = save(model_registry, small_tree)
    changed = model_registry.load_posterior(mv.version)
    changed["posterior"]["beta_severity"] = changed["posterior"]["beta_severity"] + 1.0
    changed.to_netcdf(mv.posterior_path, engine="h5netcdf", mode="w")
    with pytest.raises(IntegrityError, match="checksum"):
        model_registry.load_posterior(mv.version)


def test_a_huge_posterior_predictive_is_not_stored(tmp_path, fake_posterior):
    registry = Registry(tmp_path / "models", max_predictive_bytes=1000)
    mv = registry.save(fake_posterior, fake_metadata())
    assert mv.metadata["dropped_groups"] == ["posterior_predictive"]
    stored = registry.load_posterior(mv.version)
    assert "posterior_predictive" not in stored.children and "observed_data" in stored.children


def test_registry_with_current_fixture_serves_a_passing_version(registry_with_current, tmp_path):
    assert registry_with_current.current().verdict == "pass"
    assert registry_with_current.root == tmp_path / "models"
    assert registry_with_current.load_posterior("current").attrs["version"] == (
        registry_with_current.current().version)


def test_simulated_counts_are_stored_compressed_and_load_back_identical(model_registry,
                                                                       small_tree):
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
