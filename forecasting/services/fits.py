"""One fit of the stored episodes with the active priors: store the version, promote on pass.

`forecast fit`, `forecast run` and the refit worker all call `fit_and_register`, so that
a fit made by hand and an automated refit are made, gated and recorded the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from forecasting.domain.codebook import Codebook
from forecasting.registry import ModelVersion, Registry, VersionExistsError, content_id
from forecasting.services.coding import fit_input
from forecasting.services.models import promote_if_new_and_passing
from forecasting.services.priors import active_priors
from forecasting.settings import Settings
from forecasting.store import Database

if TYPE_CHECKING:  # fitting imports PyMC: it is imported only when a fit runs
    from forecasting.model.fitting import FitResult
    from forecasting.model.priors import PriorSet

log = logging.getLogger(__name__)
FIT_ACTOR = "forecast fit"


@dataclass(frozen=True)
class FitOutcome:
    version: ModelVersion
    promoted: bool
    reused: bool  # an identical fit (same data, priors, config, seed) was already stored
    result: FitResult | None


def fit_and_register(settings: Settings, database: Database, registry: Registry,
                     codebook: Codebook, *, promote: bool = True, actor: str = FIT_ACTOR,
                     progress: bool = False, priors: tuple[PriorSet, str] | None = None,
                     extra_metadata: dict | None = None) -> FitOutcome:
    """Fit, gate, store as an immutable version; make it current (audited as `actor`) only
    if it passed and `promote` is set.

    `priors` (a set and where it came from) replaces the active set: a candidate fit of the
    workbench (issue 21, promote=False); `extra_metadata` is added to the version's."""
    from forecasting.model.fitting import fit_and_diagnose

    # read what the fit will see first: changes made during the fit then count as new
    seen_revision = database.episodes.latest_revision_id()
    latest_priors = database.priors.latest()
    # disputed codings are held back; the coding floor is part of the gate (issue 20)
    frame, coding, coding_reasons = fit_input(database, database.episodes.frame(), settings)
    priors, source = priors or active_priors(database, settings)
    result = fit_and_diagnose(frame, codebook, priors, settings.sampler, settings.gate,
                              progress=progress)
    metadata = result.metadata() | coding | {
        "priors_source": source, "store_revision": seen_revision,
        "prior_set_id": latest_priors["id"] if latest_priors else None} | (extra_metadata or {})
    if coding_reasons:
        metadata |= {"verdict": "fail", "reasons": metadata["reasons"] + coding_reasons}
    try:
        version = registry.save(result.idata, metadata)
        reused = False
    except VersionExistsError:
        version = registry.get(content_id(metadata["model_config"], metadata["priors_hash"],
                                          metadata["data_hash"], metadata["sampler"]))
        reused = True
        if coding_reasons and version.passed:
            # stored when the coding floor held (or was lower): this refit fails it all the
            # same, and says why; the stored version itself is left as it was
            version = replace(version, metadata=version.metadata | {
                "verdict": "fail", "reasons": version.reasons + coding_reasons})
    promoted = promote and promote_if_new_and_passing(
        registry, database, version, actor,
        f"fitted on {version.episodes} episodes and passed its diagnostics gate")
    log.info("fit %s: verdict %s, promoted %s", version.version, version.verdict, promoted)
    return FitOutcome(version=version, promoted=promoted, reused=reused, result=result)
