"""Model versions as users see them: summaries, and promotion (always audited).

`forecast promote`, `POST /v1/models/{version}/promote`, a fit that passes its gate
(`forecast fit`, `forecast run`) and the refit worker all promote through `promote`, so
that every change of the served version leaves one audit row saying who and why.
"""

from __future__ import annotations

import logging
from typing import Any

from forecasting.registry import ModelVersion, Registry
from forecasting.store import Database

log = logging.getLogger(__name__)
PROMOTE_ACTION = "model:promote"


def model_summary(mv: ModelVersion, current: str | None) -> dict[str, Any]:
    """One version as `forecast models --json` and `GET /v1/models` list it."""
    meta = mv.metadata
    return {"version": mv.version, "fitted_at": mv.fitted_at, "episodes": mv.episodes,
            "verdict": mv.verdict, "reasons": mv.reasons, "current": mv.version == current,
            "data_hash": meta.get("data_hash"), "priors_hash": meta.get("priors_hash"),
            "sampler": meta.get("sampler")}


def promote(registry: Registry, database: Database, version: str, actor: str,
            reason: str = "") -> ModelVersion:
    """Make a passing `version` current (also a rollback) and audit who did it and why.

    Raises GateFailedError for a version that failed its gate, UnknownVersionError for
    one that is not stored; nothing is audited then, since nothing changed.
    """
    previous = registry.current_or_none()
    mv = registry.promote(version)
    database.audit(PROMOTE_ACTION, actor, {
        "version": mv.version, "previous": previous.version if previous else None,
        "reason": reason})
    log.info("%s promoted %s (%s)", actor, mv.version, reason or "no reason given")
    return mv


def promote_if_new_and_passing(registry: Registry, database: Database, mv: ModelVersion,
                               actor: str, reason: str) -> bool:
    """Promote a freshly fitted version unless it failed its gate or is already current."""
    current = registry.current_or_none()
    if not mv.passed or (current is not None and current.version == mv.version):
        return False
    promote(registry, database, mv.version, actor, reason)
    return True
