"""Model versions as users see them: summaries, promotion and pruning (both audited).

`forecast promote`, `POST /v1/models/{version}/promote`, a fit that passes its gate
(`forecast fit`, `forecast run`) and the refit worker all promote through `promote`, so
that every change of the served version leaves one audit row saying who and why.

`promote` refuses a candidate fit of the workbench whose prior set is not active: it was
fitted to compare priors, and serving it would serve priors nobody adopted.

`prune` applies the retention policy (Settings.retention): the registry deletes what the
policy does not keep, and what something still refers to is kept, as named by the
`REFERENCE_PROVIDERS` (evaluation results, a refit in progress; the ledger of issue 19 adds
its own provider to that list). Candidate fits never served are counted apart from the
served versions.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from forecasting.registry import ModelVersion, Registry
from forecasting.services.priors import active_priors
from forecasting.settings import RetentionPolicy, Settings
from forecasting.store import Database
from forecasting.store.ledger import ledger_references

log = logging.getLogger(__name__)
PROMOTE_ACTION = "model:promote"
PRUNE_ACTION = "model:prune"
CANDIDATE = "candidate"  # metadata["fitted_as"] of a workbench fit made to compare priors
CANDIDATE_APART = "candidate fit never served, counted apart from the served versions"

# (settings, database, registry) -> {version: [what refers to it, ...]}
ReferenceProvider = Callable[[Settings, Database, Registry], Mapping[str, Iterable[str]]]


def model_summary(mv: ModelVersion, current: str | None) -> dict[str, Any]:
    """One version as `forecast models --json` and `GET /v1/models` list it."""
    meta = mv.metadata
    return {"version": mv.version, "fitted_at": mv.fitted_at, "episodes": mv.episodes,
            "verdict": mv.verdict, "reasons": mv.reasons, "current": mv.version == current,
            "data_hash": meta.get("data_hash"), "priors_hash": meta.get("priors_hash"),
            "sampler": meta.get("sampler")}


class CandidateFitError(ValueError):
    """A candidate fit of the workbench whose priors were never made active: serving it would
    serve priors nobody adopted."""

    field = "version"

    def __init__(self, mv: ModelVersion, active_label: str):
        self.version = mv.version
        label = mv.metadata.get("candidate_priors") or "another prior set"
        priors = str(mv.metadata.get("priors_hash") or "?")[:12]
        super().__init__(
            f"version: model version {mv.version} is a candidate fit of prior set {label} "
            f"(priors {priors}), made by `forecast priors compare --fit` to compare priors, and "
            f"those priors are not the active set ({active_label}): it cannot be served. Make "
            "that set active instead (`forecast priors set FILE --note ...` or PUT /v1/priors): "
            "the refit that queues fits it on the current data and promotes the result if it "
            "passes its gate (this version itself, when the data have not changed since)")


def is_candidate(mv: ModelVersion) -> bool:
    """A version the workbench fitted to compare priors (forecasting.services.workbench)."""
    return mv.metadata.get("fitted_as") == CANDIDATE


def check_servable(settings: Settings, database: Database, mv: ModelVersion) -> None:
    """Refuse a candidate fit whose priors are not the active set's; once its set is made
    active, it is a fit of the active priors like any other (a refit then promotes it)."""
    if not is_candidate(mv):
        return
    priors, source = active_priors(database, settings)
    if mv.metadata.get("priors_hash") != priors.content_hash:
        shown = Path(source).name if Path(source).is_absolute() else source  # no server paths
        raise CandidateFitError(mv, shown)


def promote(settings: Settings, registry: Registry, database: Database, version: str,
            actor: str, reason: str = "") -> ModelVersion:
    """Make a passing `version` current (also a rollback) and audit who did it and why.

    Raises GateFailedError for a version that failed its gate, UnknownVersionError for
    one that is not stored, CandidateFitError for a candidate fit of priors that are not
    active; nothing is audited then, since nothing changed.
    """
    check_servable(settings, database, registry.get(version))
    return _make_current(registry, database, version, actor, reason)


def _make_current(registry: Registry, database: Database, version: str, actor: str,
                  reason: str) -> ModelVersion:
    previous = registry.current_or_none()
    mv = registry.promote(version)
    database.audit(PROMOTE_ACTION, actor, {
        "version": mv.version, "previous": previous.version if previous else None,
        "reason": reason})
    log.info("%s promoted %s (%s)", actor, mv.version, reason or "no reason given")
    return mv


def promote_if_new_and_passing(registry: Registry, database: Database, mv: ModelVersion,
                               actor: str, reason: str) -> bool:
    """Promote a version just fitted with the active priors (`forecast fit`, a refit) unless
    it failed its gate or is already current. A candidate fit found stored under the same
    content id has those priors too, so it needs no candidate check here."""
    current = registry.current_or_none()
    if not mv.passed or (current is not None and current.version == mv.version):
        return False
    _make_current(registry, database, mv.version, actor, reason)
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
        last = database.audit_details(PROMOTE_ACTION, until=started, limit=1)
        detail = last[0] if last else None
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


def unserved_candidates(registry: Registry, database: Database) -> set[str]:
    """Candidate fits never made current (no promotion audited): the workbench's scratch.
    A candidate whose set was adopted and promoted is a served version from then on."""
    promoted = {d.get("version") for d in database.audit_details(PROMOTE_ACTION)}
    return {mv.version for mv in registry.versions()
            if is_candidate(mv) and mv.version not in promoted}


def prune(settings: Settings, registry: Registry, database: Database, actor: str, *,
          dry_run: bool = False, policy: RetentionPolicy | None = None,
          providers: Iterable[ReferenceProvider] | None = None, reason: str = "") -> dict:
    """Delete the versions the retention policy does not keep; what was deleted and kept,
    why, and the bytes freed. Audited (who, why, what) when something was deleted.

    Candidate fits never served are counted apart: the policy's windows (the newest
    `keep_passing` passing, `keep_failed` failed) apply to the served line and to the
    candidates separately, so that comparing prior sets never pushes a version one may roll
    back to out of the window. Anything referenced is kept in either.
    """
    policy = policy or settings.retention
    referenced = referenced_versions(settings, database, registry, providers)
    candidates = unserved_candidates(registry, database)
    decisions = [d.as_dict() | {"candidate": d.version in candidates}
                 for d in registry.prune(policy.keep_passing, policy.keep_failed, referenced,
                                         apart=dict.fromkeys(candidates, CANDIDATE_APART),
                                         dry_run=dry_run)]
    deleted = [d for d in decisions if d["action"] == "delete"]
    report = {
        "dry_run": dry_run,
        "policy": {"keep_passing": policy.keep_passing, "keep_failed": policy.keep_failed},
        "deleted": [d["version"] for d in deleted],
        "kept": [d["version"] for d in decisions if d["action"] == "keep"],
        "bytes_freed": sum(d["bytes"] for d in deleted),
        "versions": decisions,
    }
    if deleted and not dry_run:
        database.audit(PRUNE_ACTION, actor, {
            "deleted": report["deleted"], "bytes_freed": report["bytes_freed"],
            "policy": report["policy"], "reason": reason})
        log.info("%s pruned %d model versions (%d bytes)", actor, len(deleted),
                 report["bytes_freed"])
    return report
