"""One fit of the stored episodes with the active priors: store the version, promote on pass.

`forecast fit`, `forecast run` and the refit worker all call `fit_and_register`, so that
a fit made by hand and an automated refit are made, gated and recorded the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from forecasting.domain.codebook import Codebook
from forecasting.model.priors import PriorSet, load_priors
from forecasting.registry import ModelVersion, Registry, VersionExistsError, content_id
from forecasting.settings import Settings
from forecasting.store import Database

if TYPE_CHECKING:  # fitting imports PyMC and JAX: web processes only need active_priors
    from forecasting.model.fitting import FitResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitOutcome:
    version: ModelVersion
    promoted: bool
    reused: bool  # an identical fit (same data, priors, config, seed) was already stored
    result: FitResult | None


def active_priors(database: Database, settings: Settings) -> tuple[PriorSet, str]:
    """The newest prior set submitted through the API, else the shipped default file."""
    latest = database.priors.latest()
    if latest is not None:
        return PriorSet.from_dict(latest["priors"]), f"prior set #{latest['id']}"
    return load_priors(settings.default_priors_path), str(settings.default_priors_path)


def fit_and_register(settings: Settings, database: Database, registry: Registry,
                     codebook: Codebook, *, promote: bool = True, progress: bool = False,
                     before_promote: Callable[[ModelVersion], None] | None = None
                     ) -> FitOutcome:
    """Fit, gate, store as an immutable version; make it current only if it passed."""
    from forecasting.model.fitting import fit_and_diagnose

    # read what the fit will see first: changes made during the fit then count as new
    seen_revision = database.episodes.latest_revision_id()
    latest_priors = database.priors.latest()
    frame = database.episodes.frame()
    priors, source = active_priors(database, settings)
    result = fit_and_diagnose(frame, codebook, priors, settings.sampler, settings.gate,
                              progress=progress)
    metadata = result.metadata() | {
        "priors_source": source, "store_revision": seen_revision,
        "prior_set_id": latest_priors["id"] if latest_priors else None}
    try:
        version = registry.save(result.idata, metadata)
        reused = False
    except VersionExistsError:
        version = registry.get(content_id(metadata["model_config"], metadata["priors_hash"],
                                          metadata["data_hash"], metadata["sampler"]))
        reused = True
    promoted = False
    current = registry.current_or_none()
    if promote and version.passed and (current is None or current.version != version.version):
        if before_promote is not None:
            before_promote(version)
        registry.promote(version.version)
        promoted = True
    log.info("fit %s: verdict %s, promoted %s", version.version, version.verdict, promoted)
    return FitOutcome(version=version, promoted=promoted, reused=reused, result=result)
