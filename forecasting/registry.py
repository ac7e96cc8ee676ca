"""Immutable model versions on disk, and an atomically switched "current" one.

Layout under the registry root:

    <root>/<version>/posterior.nc     the fit (xarray DataTree, NetCDF via h5netcdf)
    <root>/<version>/metadata.json    identity, priors, sampler, packages, diagnostics, verdict
    <root>/CURRENT                    the version served, one line
    <root>/.tmp-*                     a save in progress (or killed mid-way), or a version
                                      being pruned (renamed aside first): never listed

A version is stored lean: groups that are recomputed from the posterior on demand
(`DERIVED_GROUPS`: the per-cell log likelihood and the posterior predictive) are left out and
listed in metadata["derived_groups"]; `load_posterior` recomputes them (numpy only, cached per
process) when asked, and reads older versions that have them stored. The posterior is stored
as float32 (the forecasts' effects live on the logit scale, where 7 significant digits are
ample), as are the prior draws and log prior densities, and read back as float64;
sample_stats stay exact.

`prune` deletes the versions a retention policy does not keep (forecasting.services.models
decides what is referenced, and what is counted apart); a version is renamed aside before it
is deleted, so a reader sees it whole or not at all, and one being read (a shared lock on its
posterior file) is kept.

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
import os
import platform
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import xarray as xr

from forecasting.json_values import finite
from forecasting.model import predictive

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
PRUNED_PREFIX = TEMP_PREFIX + "pruned-"
# Draws (and the log prior densities of the draws, read by prior sensitivity) stored as
# float32 in a lean version; sample_stats (energy, step sizes, divergences) stay exact.
NARROWED_GROUPS = ("posterior", "prior", "log_prior")
# A posterior predictive recomputed on demand replicates at most this many draws (evenly
# thinned): what reads it (the PPC plot) needs quantiles of level shares, not every draw,
# and 17,000 cells x 8,000 draws of counts would be over 1 GB in a web worker.
DERIVED_PREDICTIVE_DRAWS = 1000
# (sample, cell) pairs recomputed at once: ~8 MB of float64 per level, small enough to stay
# in cache between the passes over it (2,000,000 at once was 20-25% slower)
DERIVED_BLOCK_ELEMENTS = 250_000


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

    @property
    def derived_groups(self) -> list[str]:
        """Groups left out when it was saved, recomputed from the posterior when read."""
        return list(self.metadata.get("derived_groups", []))


@dataclass(frozen=True)
class PruneDecision:
    """What `Registry.prune` does with one version, and why."""

    version: str
    verdict: str
    fitted_at: str
    bytes: int
    keep: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"version": self.version, "verdict": self.verdict, "fitted_at": self.fitted_at,
                "bytes": self.bytes, "action": "keep" if self.keep else "delete",
                "reasons": list(self.reasons)}


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


def _float32(ds: xr.Dataset) -> xr.Dataset:
    """float64 draws as float32 (coordinates untouched): half the bytes of the largest group."""
    return ds.assign({name: var.astype(np.float32) for name, var in ds.data_vars.items()
                      if var.dtype == np.float64})


def _widen(ds: xr.Dataset) -> xr.Dataset:
    """float32 draws of a lean version back to float64, so that every computation downstream
    runs as it did on versions stored at full precision."""
    narrow = {name: var.astype(np.float64) for name, var in ds.data_vars.items()
              if var.dtype == np.float32}
    return ds.assign(narrow) if narrow else ds


def _directory_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


# -- groups recomputed from the posterior on demand ---------------------------------------------
#
# With forecasting.model.predictive's functions, the ones a fit uses (PyMC-free, so web
# workers may call them), a block of draws at a time.


def _in_blocks(compute, post: xr.Dataset, n_cells: int) -> xr.Dataset:
    """compute(draws) over blocks of about DERIVED_BLOCK_ELEMENTS (sample, cell) pairs, in
    sample order (chain by chain), joined: 17,000 cells x 8,000 draws x 4 levels at once
    would be 4 GB of probabilities."""
    step = max(1, DERIVED_BLOCK_ELEMENTS // max(n_cells, 1))
    chains = []
    for chain in range(post.sizes["chain"]):
        blocks = [compute(post.isel(chain=[chain], draw=slice(start, start + step)))
                  for start in range(0, post.sizes["draw"], step)]
        chains.append(xr.concat(blocks, dim="draw"))
    return xr.concat(chains, dim="chain")


def derive_log_likelihood(tree: xr.DataTree, metadata: dict) -> xr.Dataset:
    """The per-cell multinomial log likelihood, (chain, draw, cell), as a fit stores it."""
    return _in_blocks(lambda draws: predictive.log_likelihood(tree, draws),
                      tree.posterior.to_dataset(), tree.observed_data.sizes["cell"])


def predictive_draws(post: xr.Dataset, max_draws: int | None = DERIVED_PREDICTIVE_DRAWS
                     ) -> xr.Dataset:
    """The draws a recomputed posterior predictive replicates: at most `max_draws`."""
    return predictive.thin(post, max_draws)


def derive_posterior_predictive(tree: xr.DataTree, metadata: dict,
                                max_draws: int | None = DERIVED_PREDICTIVE_DRAWS) -> xr.Dataset:
    """Replicated level counts per cell from (at most `max_draws`) posterior draws, seeded
    as the fit seeds its own (sampler seed + 2): the same answer every time."""
    params = predictive_draws(tree.posterior.to_dataset(), max_draws)
    seed = int((metadata.get("sampler") or {}).get("seed") or 0) + 2
    rng = np.random.default_rng(seed)  # one stream through the blocks, in sample order
    return _in_blocks(lambda draws: predictive.replicate_counts(draws, tree, rng=rng),
                      params, tree.observed_data.sizes["cell"])


# group -> how to recompute it from a tree holding DERIVED_INPUTS and the version's metadata
DERIVED_GROUPS = {"log_likelihood": derive_log_likelihood,
                  "posterior_predictive": derive_posterior_predictive}
DERIVED_INPUTS = ("posterior", "constant_data", "observed_data")
# Recomputed groups kept per process, most recent first, up to this many bytes in all: a
# server reads a version's groups again for each plot and report. At 17,000 cells one log
# likelihood is 1.1 GB: bigger results are recomputed on each read rather than held.
DERIVED_CACHE_BYTES = 512_000_000
_derived_cache: dict[tuple, xr.Dataset] = {}
_derived_lock = threading.Lock()


def _derived(mv: ModelVersion, group: str, tree: xr.DataTree) -> xr.Dataset:
    key = (str(mv.path), mv.metadata.get("posterior_sha256"), group)
    with _derived_lock:
        if key in _derived_cache:
            _derived_cache[key] = _derived_cache.pop(key)  # most recently used last
            return _derived_cache[key]
    missing = [g for g in DERIVED_INPUTS if g not in tree.children]
    if missing:
        raise KeyError(f"model version {mv.version} has no group {group!r}, and lacks "
                       f"{missing} to recompute it from")
    value = DERIVED_GROUPS[group](tree, mv.metadata)
    if value.nbytes <= DERIVED_CACHE_BYTES:
        with _derived_lock:
            _derived_cache[key] = value
            while sum(v.nbytes for v in _derived_cache.values()) > DERIVED_CACHE_BYTES:
                _derived_cache.pop(next(iter(_derived_cache)))  # the least recently used
    return value


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
                 max_predictive_bytes: int = DEFAULT_MAX_PREDICTIVE_BYTES, lean: bool = True):
        self.root = Path(root)
        self.max_predictive_bytes = max_predictive_bytes
        # lean=False stores every group at full precision, as versions were before issue 15
        # (bench/bench_registry_size.py compares the two)
        self.lean = lean

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
        attrs are always kept. A group the version was saved without (`DERIVED_GROUPS`) is
        recomputed from its posterior, with every group (groups=None) or when named.
        """
        mv = self.get(version)
        derivable = [g for g in DERIVED_GROUPS
                     if g in mv.derived_groups or g in mv.metadata.get("dropped_groups", [])]
        with self.reading(mv.version):
            expected = mv.metadata.get("posterior_sha256")
            if expected and _sha256_file(mv.posterior_path) != expected:
                raise IntegrityError(
                    f"model version {mv.version}: {POSTERIOR_FILE} does not match the checksum "
                    f"in {METADATA_FILE}; the file was changed after it was saved")
            if groups is None:
                with xr.open_datatree(mv.posterior_path, engine="h5netcdf") as stored:
                    self._check_identity(mv, stored.attrs)
                    tree = stored.load()
                wanted = None
            else:
                wanted = list(dict.fromkeys(groups))
                tree = self._load_groups(mv, wanted, derivable)
        for node in NARROWED_GROUPS:
            if node in tree.children:
                tree[node] = _widen(tree[node].to_dataset())
        for group in derivable:
            if group not in tree.children and (wanted is None or group in wanted):
                tree[group] = _derived(mv, group, tree)
        if wanted is not None:  # drop what was read only to recompute a group
            for extra in [g for g in tree.children if g not in wanted]:
                del tree[extra]
        return tree

    def _load_groups(self, mv: ModelVersion, wanted: list[str],
                     derivable: list[str]) -> xr.DataTree:
        # opening single groups skips the whole-tree index, 3x faster than open_datatree
        with xr.open_dataset(mv.posterior_path, engine="h5netcdf") as root:
            attrs = dict(root.attrs)
        self._check_identity(mv, attrs)
        to_derive = [g for g in wanted if g in derivable]
        inputs = list(DERIVED_INPUTS) if to_derive else []
        datasets = {}
        for group in dict.fromkeys([*wanted, *inputs]):
            try:
                with xr.open_dataset(mv.posterior_path, engine="h5netcdf", group=group) as ds:
                    datasets[group] = ds.load()
            except (KeyError, OSError):
                if group in to_derive:
                    continue  # recomputed below
                raise KeyError(f"model version {mv.version} has no group {group!r}") from None
        tree = xr.DataTree.from_dict(datasets)
        tree.attrs.update(attrs)
        return tree

    @contextlib.contextmanager
    def reading(self, version: str) -> Iterator[ModelVersion]:
        """Hold `version` open: a shared lock on its posterior file, which `prune` respects
        (it keeps a version being read). Raises UnknownVersionError if it is gone (pruned
        between looking it up and opening it)."""
        mv = self.get(version)
        with contextlib.ExitStack() as stack:
            try:
                fh = stack.enter_context(open(mv.posterior_path, "rb"))
            except FileNotFoundError:
                raise UnknownVersionError(mv.version,
                                          [v.version for v in self.versions()]) from None
            fcntl.flock(fh, fcntl.LOCK_SH)
            try:  # a prune may have renamed it aside while we waited for the lock
                same = os.stat(mv.posterior_path).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                raise UnknownVersionError(mv.version, [v.version for v in self.versions()])
            yield mv

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
        self.get(version)  # an unknown version is refused before anything is written
        with self._locked():  # a prune cannot delete it between the check and the switch
            mv = self.get(version)
            if not mv.passed:
                reasons = "; ".join(mv.reasons) or "no reasons recorded"
                raise GateFailedError(
                    f"model version {mv.version} failed its diagnostics gate ({reasons}) and "
                    "cannot be made current; refit with a configuration that passes")
            self._write_current(mv)
        log.info("model version %s is now current", mv.version)
        return mv

    def _write_current(self, mv: ModelVersion) -> None:
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
        return finite(json.loads(_canonical_json(meta)))

    def _tree_to_store(self, idata: xr.DataTree, meta: dict) -> tuple[xr.DataTree, list[str]]:
        tree = idata.copy()  # shallow: the caller's tree and attrs stay untouched
        dropped = []
        if self.lean:
            derived = [g for g in DERIVED_GROUPS if g in tree.children]
            for group in derived:
                del tree[group]
            if derived:
                meta["derived_groups"] = derived
            for group in NARROWED_GROUPS:
                if group in tree.children:
                    tree[group] = _float32(tree[group].to_dataset())
        if "posterior_predictive" in tree.children:
            size = tree["posterior_predictive"].to_dataset().nbytes
            if size > self.max_predictive_bytes:
                del tree["posterior_predictive"]
                dropped.append("posterior_predictive")
                log.info("not storing posterior_predictive (%.0f MB)", size / 1e6)
        tree.attrs = {**tree.attrs, **{k: meta[k] for k in IDENTITY_ATTRS}}
        return tree, dropped

    # -- pruning ---------------------------------------------------------------------------

    def plan_prune(self, keep_passing: int, keep_failed: int,
                   referenced: Mapping[str, Iterable[str]] | None = None,
                   apart: Mapping[str, str] | None = None) -> list[PruneDecision]:
        """What `prune` would do with each version, newest fit first, and why.

        Kept: the current version, the `keep_passing` newest that passed the gate, the
        `keep_failed` newest that failed it, and every version in `referenced` (version ->
        what refers to it). Everything else is deleted. The versions in `apart` (version ->
        why, the first reason given for it) are counted apart: the two windows apply to
        them and to the others separately, so that they never push another version out.
        """
        for name, value in (("keep_passing", keep_passing), ("keep_failed", keep_failed)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: {value!r} must be a whole number >= 0")
        referenced, apart = referenced or {}, apart or {}
        current = self._current_name()
        seen: dict[tuple[bool, str], int] = {}  # (counted apart, verdict) -> versions so far
        limits = {"pass": keep_passing, "fail": keep_failed}
        words = {"pass": "passing", "fail": "failed"}
        decisions = []
        for mv in self.versions():
            group = (mv.version in apart, mv.verdict)
            seen[group] = rank = seen.get(group, 0) + 1
            limit, word = limits[mv.verdict], words[mv.verdict]
            reasons = []
            if mv.version == current:
                reasons.append("current")
            if rank <= limit:
                reasons.append(f"one of the {limit} newest {word} versions (#{rank})")
            reasons += [f"referenced by {what}" for what in referenced.get(mv.version, ())]
            keep = bool(reasons)
            if not keep:
                reasons.append(f"{word}, older than the {limit} newest {word} versions")
            if mv.version in apart:
                reasons.insert(0, apart[mv.version])
            decisions.append(PruneDecision(version=mv.version, verdict=mv.verdict,
                                           fitted_at=mv.fitted_at, bytes=_directory_bytes(mv.path),
                                           keep=keep, reasons=reasons))
        return decisions

    def prune(self, keep_passing: int, keep_failed: int,
              referenced: Mapping[str, Iterable[str]] | None = None, *,
              apart: Mapping[str, str] | None = None,
              dry_run: bool = False) -> list[PruneDecision]:
        """Delete the versions `plan_prune` does not keep; the decisions as carried out.

        Holds the registry's lock throughout, so no save or promotion interleaves: the
        version a promotion is switching to is current before the plan is made, or the
        promotion finds it gone and fails cleanly. A version being read (`reading`) is kept.
        """
        if not self.root.is_dir():
            return []
        with self._locked():
            decisions = self.plan_prune(keep_passing, keep_failed, referenced, apart)
            if dry_run:
                return decisions
            done = []
            for decision in decisions:
                if not decision.keep and not self._remove(decision.version):
                    why_apart = [apart[decision.version]] if decision.version in (apart or {}) else []
                    decision = replace(decision, keep=True, reasons=[
                        *why_apart, "being read (kept this time; pruned by a later run)"])
                done.append(decision)
            _fsync_path(self.root)
        deleted = [d.version for d in done if not d.keep]
        if deleted:
            log.info("pruned model versions %s (%d bytes)", deleted,
                     sum(d.bytes for d in done if not d.keep))
        return done

    def _current_name(self) -> str | None:
        try:
            return (self.root / CURRENT_FILE).read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def _remove(self, version: str) -> bool:
        """Rename the version aside (atomically: readers see it whole or not at all), then
        delete it. False, and nothing done, while a reader holds it."""
        path = self.root / version
        aside = self.root / f"{PRUNED_PREFIX}{version}-{os.getpid()}-{os.urandom(4).hex()}"
        with contextlib.ExitStack() as stack:
            with contextlib.suppress(FileNotFoundError):  # a version without its posterior
                fh = stack.enter_context(open(path / POSTERIOR_FILE, "rb"))
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("not pruning model version %s: it is being read", version)
                    return False
            os.rename(path, aside)
        shutil.rmtree(aside, ignore_errors=True)
        return True

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
