"""Immutable model versions on disk, and an atomically switched "current" one.

Layout under the registry root:

    <root>/<version>/posterior.nc     the fit (xarray DataTree, NetCDF via h5netcdf)
    <root>/<version>/metadata.json    identity, priors, sampler, packages, diagnostics, verdict
    <root>/CURRENT                    the version served, one line
    <root>/.tmp-*                     a save in progress (or killed mid-way): never listed

A version id is a content id (`content_id`): the same model config, priors, data and sampler
settings give the same id. Saving an id that already exists is refused (`VersionExistsError`)
rather than silently replaced or merged: a version never changes once written, and a caller
that may refit unchanged inputs can ask `registry.has(version)` before paying for the fit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import xarray as xr

log = logging.getLogger(__name__)

POSTERIOR_FILE = "posterior.nc"
METADATA_FILE = "metadata.json"
CURRENT_FILE = "CURRENT"
TEMP_PREFIX = ".tmp-"
VERDICTS = ("pass", "fail")
PACKAGES = ("pymc", "pytensor", "arviz", "nutpie", "numpyro", "jax", "xarray", "numpy")
# Identity written into the saved tree's root attrs and checked again on load.
IDENTITY_ATTRS = ("version", "priors_hash", "data_hash")
REQUIRED_METADATA = ("episodes", "data_hash", "priors_hash", "model_config", "sampler", "verdict")
# Version ids become folder names: keep them to safe characters (no "..", no "/").
_VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# posterior_predictive is large (int counts per draw x cell x level) and cheap to regenerate.
DEFAULT_MAX_PREDICTIVE_BYTES = 50_000_000


class RegistryError(Exception):
    """Base class of the registry's errors."""


class UnknownVersionError(RegistryError, LookupError):
    def __init__(self, version: str, known: Iterable[str] = ()):
        self.version = version
        known = list(known)
        hint = f"; known versions: {known[:10]}" if known else "; the registry is empty"
        super().__init__(f"unknown model version {version!r}{hint}")


class NoCurrentModelError(RegistryError, LookupError):
    """No version has been made current yet (or CURRENT names a version that is gone)."""


class GateFailedError(RegistryError):
    """The version failed its diagnostics gate and may not be made current."""


class VersionExistsError(RegistryError):
    """A version with this content id is already stored; versions are never overwritten."""


class IntegrityError(RegistryError):
    """A stored version's files disagree with its metadata (tampered or corrupted)."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    path: Path
    metadata: dict

    @property
    def verdict(self) -> str:
        return self.metadata["verdict"]

    @property
    def fitted_at(self) -> str:
        return self.metadata["fitted_at"]

    @property
    def episodes(self) -> int:
        return self.metadata["episodes"]

    @property
    def reasons(self) -> list[str]:
        return list(self.metadata.get("reasons", []))

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def posterior_path(self) -> Path:
        return self.path / POSTERIOR_FILE


def _canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def content_id(model_config: dict, priors_hash: str, data_hash: str, sampler: dict) -> str:
    """First 12 hex digits of the sha256 of the inputs as sorted JSON: same inputs, same id."""
    payload = {"model_config": model_config, "priors_hash": priors_hash,
               "data_hash": data_hash, "sampler": sampler}
    return hashlib.sha256(_canonical_json(payload).encode()).hexdigest()[:12]


def package_versions() -> dict[str, str | None]:
    """Versions of the packages a fit depends on (None when one is not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def utc_now_iso() -> str:
    """Now, as aware UTC ISO text: "2026-11-29T03:00:00.000+00:00"."""
    return utc_iso(datetime.now(UTC))


def utc_iso(moment: datetime | str) -> str:
    """A timestamp (datetime or ISO text) as aware UTC ISO text, to the millisecond.

    A naive one is refused: its time zone would be a guess.
    """
    parsed = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    if not isinstance(parsed, datetime) or parsed.utcoffset() is None:
        raise ValueError(f"timestamp {moment!r} has no time zone; give it in UTC, "
                         "e.g. 2026-11-29T03:00:00+00:00")
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds")


def _json_default(value):
    # diagnostics arrive as numpy scalars and arrays; paths from settings
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON serialisable")


def _finite(value):
    """NaN/inf -> None, recursively: metadata.json stays strict JSON that any client parses
    (an undefined R-hat of a constant parameter is NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _integer_compression(tree: xr.DataTree) -> dict[str, dict]:
    """gzip for the integer and boolean variables (simulated counts, sampler flags): their
    repeated small values shrink many times over (the prior predictive counts, int64 per cell
    and level, were 8.7 of the seed fit's 57 MB). Draws stay uncompressed: random float64
    mantissas gain ~20% for twice the write time."""
    encoding = {}
    for node in tree.subtree:
        variables = {name: {"compression": "gzip", "compression_opts": 4, "shuffle": True}
                     for name, var in node.to_dataset().data_vars.items()
                     if var.dtype.kind in "biu"}
        if variables:
            encoding[node.path] = variables
    return encoding


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sort_key(mv: ModelVersion):
    try:
        fitted = datetime.fromisoformat(mv.fitted_at)
    except (KeyError, TypeError, ValueError):
        fitted = datetime.min.replace(tzinfo=UTC)
    if fitted.tzinfo is None:
        fitted = fitted.replace(tzinfo=UTC)
    return fitted, mv.version


class Registry:
    """Model versions under `root` (Settings.registry_path). Safe across processes."""

    def __init__(self, root: Path | str, *,
                 max_predictive_bytes: int = DEFAULT_MAX_PREDICTIVE_BYTES):
        self.root = Path(root)
        self.max_predictive_bytes = max_predictive_bytes

    # -- reading ---------------------------------------------------------------------------

    def versions(self) -> list[ModelVersion]:
        """Every stored version, newest fit first."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                found.append(self._read_version(entry.name))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("skipping unreadable model version %s: %s", entry.name, exc)
        return sorted(found, key=_sort_key, reverse=True)

    def has(self, version: str) -> bool:
        return isinstance(version, str) and bool(_VERSION_PATTERN.match(version)) and (
            self.root / version / METADATA_FILE).is_file()

    def get(self, version: str) -> ModelVersion:
        """One version by id; "current" is an alias of the version currently served."""
        if version == "current":
            return self.current()
        if not self.has(version):
            raise UnknownVersionError(version, [v.version for v in self.versions()])
        return self._read_version(version)

    def current_or_none(self) -> ModelVersion | None:
        try:
            version = (self.root / CURRENT_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if not self.has(version):
            log.error("CURRENT names %r, which is not a stored version", version)
            return None
        return self._read_version(version)

    def current(self) -> ModelVersion:
        found = self.current_or_none()
        if found is None:
            raise NoCurrentModelError(
                f"no current model version in {self.root}; fit one (`forecast fit`) or make a "
                "passing version current (`forecast promote VERSION`)")
        return found

    def load_posterior(self, version: str, *, groups: Iterable[str] | None = None) -> xr.DataTree:
        """The stored DataTree, fully in memory, after checking it is the one metadata describes.

        `groups` limits what is read (e.g. ["posterior"] for the forecast engine); the root
        attrs are always kept.
        """
        mv = self.get(version)
        expected = mv.metadata.get("posterior_sha256")
        if expected and _sha256_file(mv.posterior_path) != expected:
            raise IntegrityError(
                f"model version {mv.version}: {POSTERIOR_FILE} does not match the checksum in "
                f"{METADATA_FILE}; the file was changed after it was saved")
        if groups is None:
            with xr.open_datatree(mv.posterior_path, engine="h5netcdf") as stored:
                self._check_identity(mv, stored.attrs)
                return stored.load()
        # opening single groups skips the whole-tree index, 3x faster than open_datatree
        with xr.open_dataset(mv.posterior_path, engine="h5netcdf") as root:
            attrs = dict(root.attrs)
        self._check_identity(mv, attrs)
        datasets = {}
        for group in groups:
            try:
                with xr.open_dataset(mv.posterior_path, engine="h5netcdf", group=group) as ds:
                    datasets[group] = ds.load()
            except (KeyError, OSError):
                raise KeyError(f"model version {mv.version} has no group {group!r}") from None
        tree = xr.DataTree.from_dict(datasets)
        tree.attrs.update(attrs)
        return tree

    # -- writing ---------------------------------------------------------------------------

    def save(self, idata: xr.DataTree, metadata: dict) -> ModelVersion:
        """Store a fit as a new immutable version (whatever its verdict; nothing is promoted).

        `metadata` needs episodes, data_hash, priors_hash, model_config, sampler and verdict;
        version (the content id), fitted_at, package_versions, reasons, etc. are filled in when
        absent. A given version must equal the content id of those inputs.
        """
        if "posterior" not in idata.children:
            raise ValueError("the fit has no 'posterior' group; nothing to store")
        meta = self._complete_metadata(metadata)
        version = meta["version"]
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._remove_leftovers()
            if (self.root / version).exists():
                raise VersionExistsError(
                    f"model version {version} already exists (same model config, priors, data "
                    "and sampler settings); use it, or change the seed to refit")
            tree, dropped = self._tree_to_store(idata, meta)
            if dropped:
                meta["dropped_groups"] = dropped
            tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self.root))
            try:
                tmp.chmod(0o755)  # mkdtemp makes it private; servers may run as another user
                tree.to_netcdf(tmp / POSTERIOR_FILE, engine="h5netcdf",
                               encoding=_integer_compression(tree))
                meta["posterior_sha256"] = _sha256_file(tmp / POSTERIOR_FILE)
                (tmp / METADATA_FILE).write_text(
                    json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n",
                    encoding="utf-8")
                for name in (POSTERIOR_FILE, METADATA_FILE):
                    _fsync_path(tmp / name)
                _fsync_path(tmp)
                os.rename(tmp, self.root / version)  # atomic: the version appears whole or not
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            _fsync_path(self.root)
        log.info("saved model version %s (verdict %s)", version, meta["verdict"])
        return self._read_version(version)

    def promote(self, version: str) -> ModelVersion:
        """Make a passing version current (also how to roll back to an earlier one)."""
        mv = self.get(version)
        if not mv.passed:
            reasons = "; ".join(mv.reasons) or "no reasons recorded"
            raise GateFailedError(
                f"model version {mv.version} failed its diagnostics gate ({reasons}) and cannot "
                "be made current; refit with a configuration that passes")
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".CURRENT", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                os.fchmod(fh.fileno(), 0o644)  # mkstemp makes it private
                fh.write(mv.version + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, self.root / CURRENT_FILE)  # readers see the old or the new
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        _fsync_path(self.root)
        log.info("model version %s is now current", mv.version)
        return mv

    # -- internals -------------------------------------------------------------------------

    def _read_version(self, version: str) -> ModelVersion:
        path = self.root / version
        meta = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
        if meta.get("version") != version:
            raise ValueError(f"{path / METADATA_FILE} names version {meta.get('version')!r}")
        return ModelVersion(version=version, path=path, metadata=meta)

    def _complete_metadata(self, metadata: dict) -> dict:
        missing = [k for k in REQUIRED_METADATA if k not in metadata]
        if missing:
            raise ValueError(f"model metadata lacks {missing}")
        if metadata["verdict"] not in VERDICTS:
            raise ValueError(
                f"Requested verdict '{metadata['verdict']}' but it must be one of {list(VERDICTS)}")
        expected = content_id(metadata["model_config"], metadata["priors_hash"],
                              metadata["data_hash"], metadata["sampler"])
        version = metadata.get("version", expected)
        if version != expected:
            raise ValueError(f"metadata version {version!r} is not the content id {expected!r} "
                             "of its model_config, priors_hash, data_hash and sampler")
        defaults = {"fitted_at": utc_now_iso(), "package_versions": package_versions(),
                    "codebook_version": None, "priors": {}, "timings": {}, "diagnostics": {},
                    "reasons": []}
        meta = {**defaults, **metadata, "version": version}
        meta["fitted_at"] = utc_iso(meta["fitted_at"])
        # round trip through JSON now so that an unserialisable value fails before any write
        return _finite(json.loads(_canonical_json(meta)))

    def _tree_to_store(self, idata: xr.DataTree, meta: dict) -> tuple[xr.DataTree, list[str]]:
        tree = idata.copy()  # shallow: the caller's tree and attrs stay untouched
        dropped = []
        if "posterior_predictive" in tree.children:
            size = tree["posterior_predictive"].to_dataset().nbytes
            if size > self.max_predictive_bytes:
                del tree["posterior_predictive"]
                dropped.append("posterior_predictive")
                log.info("not storing posterior_predictive (%.0f MB)", size / 1e6)
        tree.attrs = {**tree.attrs, **{k: meta[k] for k in IDENTITY_ATTRS}}
        return tree, dropped

    @staticmethod
    def _check_identity(mv: ModelVersion, attrs) -> None:
        wrong = {k: (attrs.get(k), mv.metadata.get(k)) for k in IDENTITY_ATTRS
                 if attrs.get(k) != mv.metadata.get(k)}
        if wrong:
            detail = ", ".join(f"{k}: file {f!r} vs metadata {m!r}" for k, (f, m) in wrong.items())
            raise IntegrityError(
                f"model version {mv.version}: the posterior's identity disagrees with its "
                f"metadata ({detail}); refusing to load it")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # An flock dies with its process, so leftovers seen while holding it are from dead saves.
        with open(self.root / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _remove_leftovers(self) -> None:
        for entry in self.root.glob(TEMP_PREFIX + "*"):
            if entry.is_dir():
                log.warning("removing an interrupted save: %s", entry.name)
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.endswith(".CURRENT"):
                # a promote may be writing it right now: only old ones are leftovers
                with contextlib.suppress(OSError):
                    if datetime.now(UTC).timestamp() - entry.stat().st_mtime > 60:
                        entry.unlink()
