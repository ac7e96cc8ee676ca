"""What the views need (settings, database, codebook, registry, forecast engine), per app.

The forecast engine follows the registry's CURRENT pointer: every request checks it
(a small file read), and a newly promoted version is loaded once, then swapped in,
while requests already running keep the engine they started with.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app

from forecasting.domain.codebook import Codebook, load_codebook
from forecasting.files import write_atomically
from forecasting.refits import RefitService
from forecasting.registry import CURRENT_FILE, ModelVersion, NoCurrentModelError, Registry
from forecasting.services.setup import open_database
from forecasting.serving import plots
from forecasting.serving.forecasts import ForecastEngine
from forecasting.settings import Settings
from forecasting.store import Database

log = logging.getLogger(__name__)
_ENGINES_KEPT = 4


@dataclass
class ModelHolder:
    registry: Registry
    codebook: Codebook
    max_draws: int | None = None  # posterior draws an answer uses (settings.limits.max_draws)
    _engines: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pointer: tuple = (None, None)  # (stat signature of CURRENT, version it named)

    def current_version(self) -> str | None:
        """The version CURRENT names; re-read only when the file was replaced (cheap stat)."""
        path = self.registry.root / CURRENT_FILE
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._pointer[0] != signature:
            current = self.registry.current_or_none()
            self._pointer = (signature, current.version if current else None)
        return self._pointer[1]

    def engine(self, version: str = "current") -> ForecastEngine:
        """The engine of `version` ("current" follows CURRENT), loaded once and cached."""
        if version == "current":
            version = self.current_version()
            if version is None:
                raise NoCurrentModelError(
                    "no model version is current yet: run `forecast fit` (or `make run`)")
        engine = self._engines.get(version)
        if engine is not None:
            return engine
        with self._lock:
            if version not in self._engines:
                log.info("loading model version %s", version)
                self._engines[version] = ForecastEngine.from_version(
                    self.registry, version, self.codebook, max_draws=self.max_draws)
                while len(self._engines) > _ENGINES_KEPT:
                    self._engines.popitem(last=False)
            return self._engines[version]


@dataclass
class PlotCache:
    """Plots of immutable versions never change: render once, keep the PNG on disk."""

    registry: Registry
    folder: Path

    def get(self, mv: ModelVersion, name: str) -> bytes:
        path = self.folder / mv.version / f"{name}.png"
        if path.exists():
            return path.read_bytes()
        needs = plots.groups_needed(name)
        try:
            tree = self.registry.load_posterior(mv.version, groups=needs)
        except KeyError as exc:  # the version was stored without a group the plot needs
            raise plots.PlotUnavailableError(
                f"plot '{name}' needs the group(s) {list(needs)}: {exc.args[0]}") from None
        png = plots.render(tree, name)
        write_atomically(path, png, durable=False)  # a lost plot is rendered again
        return png


@dataclass
class Services:
    settings: Settings
    database: Database
    codebook: Codebook
    registry: Registry
    models: ModelHolder
    plots: PlotCache
    refits: RefitService

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        codebook = load_codebook(settings.codebook_path)
        registry = Registry(settings.registry_path)
        database = open_database(settings)
        return cls(settings=settings, database=database, codebook=codebook,
                   registry=registry,
                   models=ModelHolder(registry, codebook, max_draws=settings.limits.max_draws),
                   plots=PlotCache(registry, settings.instance_path / "plots"),
                   refits=RefitService.from_settings(settings, database, registry=registry,
                                                     codebook=codebook))


def services() -> Services:
    return current_app.extensions["forecasting"]
