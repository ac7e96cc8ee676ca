"""Model versions as users see them: summaries, promotion and pruning (both audited).

`forecast promote`, `POST /v1/models/{version}/promote`, a fit that passes its gate
(`forecast fit`, `forecast run`) and the refit worker all promote through `promote`, so
that every change of the served version leaves one audit row saying who and why.

`prune` applies the retention policy (Settings.retention): the registry deletes what the
policy does not keep, and what something still refers to is kept, as named by the
`REFERENCE_PROVIDERS` (evaluation results, a refit in progress; the ledger of issue 19 adds
its own provider to that list).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import select

from forecasting.registry import ModelVersion, Registry
from forecasting.settings import RetentionPolicy, Settings
from forecasting.store import Database
from forecasting.store.ledger import ledger_references
from forecasting.store.schema import audit_log

log = logging.getLogger(__name__)
PROMOTE_ACTION = "model:promote"
PRUNE_ACTION = "model:prune"

# (settings, database, registry) -> {version: [what refers to it, ...]}
ReferenceProvider = Callable[[Settings, Database, Registry], Mapping[str, Iterable[str]]]


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


# -- retention ----------------------------------------------------------------------------------


def evaluation_references(settings: Settings, database: Database,
                          registry: Registry) -> dict[str, list[str]]:
    """Versions with evaluation results stored in the instance (backtest, SBC, sensitivity,
    comparison): the results name the version and would be left pointing at nothing."""
    from forecasting.evaluation.reports import evaluation_dir

    found = {}
    for mv in registry.versions():
        folder = evaluation_dir(settings, mv.version)
        kinds = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        if kinds:
            found[mv.version] = [f"evaluation results ({', '.join(kinds)})"]
    return found


def refit_references(settings: Settings, database: Database,
                     registry: Registry) -> dict[str, list[str]]:
    """Versions a refit in progress depends on: the one current when it started (the last
    promotion before then) and any it has saved since (about to be promoted)."""
    found: dict[str, list[str]] = {}
    versions = registry.versions()
    for job in database.refits.active():
        if job["status"] != "running" or not job["started_at"]:
            continue
        started = dt.datetime.fromisoformat(job["started_at"])
        saved_since = started.replace(microsecond=started.microsecond // 1000 * 1000)  # as fitted_at
        with database.engine.connect() as conn:
            detail = conn.execute(
                select(audit_log.c.detail)
                .where(audit_log.c.action == PROMOTE_ACTION, audit_log.c.at <= started)
                .order_by(audit_log.c.id.desc()).limit(1)).scalar_one_or_none()
        if detail and detail.get("version"):
            found.setdefault(detail["version"], []).append(
                f"refit {job['id']} in progress (current when it started)")
        for mv in versions:
            if dt.datetime.fromisoformat(mv.fitted_at) >= saved_since:
                found.setdefault(mv.version, []).append(
                    f"refit {job['id']} in progress (saved by it, not yet promoted)")
    return found


REFERENCE_PROVIDERS: list[ReferenceProvider] = [evaluation_references, refit_references,
                                               ledger_references]


def referenced_versions(settings: Settings, database: Database, registry: Registry,
                        providers: Iterable[ReferenceProvider] | None = None
                        ) -> dict[str, list[str]]:
    """Every version something refers to, with what refers to it, from every provider."""
    found: dict[str, list[str]] = {}
    for provider in REFERENCE_PROVIDERS if providers is None else providers:
        for version, reasons in provider(settings, database, registry).items():
            found.setdefault(version, []).extend(reasons)
    return found


def prune(settings: Settings, registry: Registry, database: Database, actor: str, *,
          dry_run: bool = False, policy: RetentionPolicy | None = None,
          providers: Iterable[ReferenceProvider] | None = None, reason: str = "") -> dict:
    """Delete the versions the retention policy does not keep; what was deleted and kept,
    why, and the bytes freed. Audited (who, why, what) when something was deleted."""
    policy = policy or settings.retention
    referenced = referenced_versions(settings, database, registry, providers)
    decisions = registry.prune(policy.keep_passing, policy.keep_failed, referenced,
                               dry_run=dry_run)
    deleted = [d for d in decisions if not d.keep]
    report = {
        "dry_run": dry_run,
        "policy": {"keep_passing": policy.keep_passing, "keep_failed": policy.keep_failed},
        "deleted": [d.version for d in deleted],
        "kept": [d.version for d in decisions if d.keep],
        "bytes_freed": sum(d.bytes for d in deleted),
        "versions": [d.as_dict() for d in decisions],
    }
    if deleted and not dry_run:
        database.audit(PRUNE_ACTION, actor, {
            "deleted": report["deleted"], "bytes_freed": report["bytes_freed"],
            "policy": report["policy"], "reason": reason})
        log.info("%s pruned %d model versions (%d bytes)", actor, len(deleted),
                 report["bytes_freed"])
    return report
