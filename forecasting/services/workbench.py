"""The modeler's workbench (issue 21): priors from outcome-scale statements, their
consequences before use, candidate fits compared with the active set, and the history.

`forecast priors elicit|compare|history` and `POST /v1/priors/elicit`,
`POST /v1/priors/compare`, `GET /v1/priors/history` call these functions. Making a set active
stays `submit_priors` (forecasting.services.priors): modeler only, a note required, the
statements of an elicited file stored with it.

A prior set is named by a reference (`resolve`): "active", "default", a stored set's id
("7" or "#7"), or (CLI only) a prior file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecasting.domain.codebook import Codebook
from forecasting.model.arithmetic import PARAMETERS
from forecasting.model.elicitation import (
    Elicitation,
    StatementError,
    elicit,
    elicitation_meta,
    render_prior_file,
    statements_from_dict,
)
from forecasting.model.prior_predictive import QUANTITIES, prior_predictive
from forecasting.model.priors import (
    PriorConfigError,
    PriorProblem,
    PriorSet,
    load_priors,
    prior_file_meta,
)
from forecasting.services.coding import modelled_episodes
from forecasting.services.models import CANDIDATE, is_candidate
from forecasting.services.priors import active_priors, read_priors_file
from forecasting.settings import SamplerSettings, Settings
from forecasting.store import Database

if TYPE_CHECKING:
    from forecasting.registry import ModelVersion, Registry

COMPARE_DRAWS = 1000  # prior predictive draws per side (the same seed: common random numbers)
FORECAST_ROWS = 10  # cells shown, largest difference first


@dataclasses.dataclass(frozen=True)
class PriorRef:
    """A resolved prior set: the set, how it was named, and its stored record if any."""

    priors: PriorSet
    label: str
    record: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None  # statements behind it (a file's [meta], a record's)


def resolve(ref: str, database: Database, settings: Settings, *, files: bool = True) -> PriorRef:
    """"active", "default", a stored set's id ("7", "#7"), or (with `files`) a prior file."""
    text = str(ref).strip()
    if text == "active":
        priors, source = active_priors(database, settings)
        latest = database.priors.latest()
        shown = Path(source).name if Path(source).is_absolute() else source  # no server paths
        return PriorRef(priors, f"active ({shown})", latest,
                        latest.get("statements") if latest else None)
    if text == "default":
        return PriorRef(load_priors(settings.default_priors_path), "default")
    if text.lstrip("#").isdigit():
        record = database.priors.get(int(text.lstrip("#")))
        if record is None:
            raise PriorConfigError(PriorProblem("prior_set", f"no stored prior set #{text}; "
                                                             f"see `forecast priors history`"))
        return PriorRef(PriorSet.from_dict(record["priors"]), f"prior set #{record['id']}",
                        record, record.get("statements"))
    if files and Path(text).is_file():
        raw = read_priors_file(text)
        return PriorRef(PriorSet.from_dict(raw), text, None, prior_file_meta(raw))
    where = "'active', 'default', a stored set's id" + (" or a prior file" if files else "")
    raise PriorConfigError(PriorProblem("prior_set", f"unknown prior set {ref!r}; use {where}"))


# -- statements -> priors ---------------------------------------------------------------------


def elicit_priors(codebook: Codebook, database: Database, settings: Settings,
                  statements: Mapping[str, Any], *, files: bool = True,
                  keep_samples: bool = False) -> dict[str, Any]:
    """Solve for the prior set that meets `statements` (a statements document), check it,
    and answer with the prior file to save; nothing is stored.

    `met` is false and `conflicts` names the statements when they cannot all be met
    (`prior_file` is then still given, marked `met = false` in its [meta], so that the
    modeler sees how close it came). Raises StatementError for a malformed document.
    """
    parsed = statements_from_dict(statements, codebook)
    try:
        base = resolve(parsed.base, database, settings, files=files)
    except PriorConfigError as exc:
        raise StatementError(PriorProblem("meta.base", str(exc.problems[0].message
                                                           if exc.problems else exc))) from None
    result: Elicitation = elicit(parsed, codebook, base.priors)
    meta = elicitation_meta(parsed, result, base.label)
    check = prior_predictive(codebook, result.priors, draws=COMPARE_DRAWS)
    if not keep_samples:
        check.pop("samples")
    return {
        "met": result.met,
        "statements": result.checks,
        "conflicts": result.conflicts,
        "base": {"label": base.label, "content_hash": base.priors.content_hash},
        "adjusted": meta["adjusted"],
        "changes": result.changes(base.priors),
        "content_hash": result.priors.content_hash,
        "priors": result.priors.to_dict(),
        "meta": meta,
        "prior_file": render_prior_file(result.priors, meta),
        "prior_predictive": check,
        "solver": result.solver,
    }


# -- consequences: two prior sets side by side ----------------------------------------------------


def parameter_diff(a: PriorSet, b: PriorSet) -> list[dict[str, Any]]:
    """Every parameter: its prior in A and in B, and whether they differ."""
    return [{"parameter": name, "a": a[name], "b": b[name], "changed": a[name] != b[name]}
            for name in PARAMETERS]


def _interval(d: Mapping[str, Any]) -> dict[str, float]:
    q = d["quantiles"]
    return {"median": q["0.5"], "low": q["0.05"], "high": q["0.95"]}


def outcome_diff(summary_a: Mapping[str, Any], summary_b: Mapping[str, Any]
                 ) -> list[dict[str, Any]]:
    """Every quantity of the prior predictive: median and 90% interval under A and B."""
    rows = []
    for name in QUANTITIES:
        a, b = summary_a["outcome"][name], summary_b["outcome"][name]
        rows.append({"quantity": name, "label": a["label"], "a": _interval(a),
                     "b": _interval(b)})
    return rows


def compare_priors(codebook: Codebook, database: Database, settings: Settings, a: str, b: str,
                   *, draws: int = COMPARE_DRAWS, files: bool = True,
                   keep_samples: bool = False) -> dict[str, Any]:
    """Two prior sets on both scales, before any fit: the parameter diff and the prior
    predictive of each (the same seed, so differences are the priors', not the draws')."""
    ref_a, ref_b = (resolve(r, database, settings, files=files) for r in (a, b))
    check_a = prior_predictive(codebook, ref_a.priors, draws=draws, seed=0)
    check_b = prior_predictive(codebook, ref_b.priors, draws=draws, seed=0)
    doc = {
        "a": _side(ref_a), "b": _side(ref_b),
        "same_priors": ref_a.priors == ref_b.priors,
        "parameters": parameter_diff(ref_a.priors, ref_b.priors),
        "outcome": outcome_diff(check_a, check_b),
        "draws": draws,
    }
    if keep_samples:
        doc["prior_predictive"] = {"a": check_a, "b": check_b}
    return doc


def _side(ref: PriorRef) -> dict[str, Any]:
    out = {"label": ref.label, "content_hash": ref.priors.content_hash}
    if ref.record:
        out["prior_set_id"] = ref.record["id"]
    if ref.meta and ref.meta.get("statements"):
        out["statements"] = ref.meta["statements"]
    return out


# -- consequences on the data: candidate fits and leaving triggers out ----------------------------


def _version_for(ref: PriorRef, settings: Settings, database: Database, registry: Registry,
                 codebook: Codebook, actor: str, progress: Callable[[str], None] | None
                 ) -> tuple[ModelVersion, bool]:
    """The model version fitted with `ref`'s priors on the current data: the current version
    when it is that, else a candidate fit stored in the registry and never promoted."""
    from forecasting.domain.cells import aggregate
    from forecasting.services.fits import fit_and_register

    current = registry.current_or_none()
    if current is not None and current.metadata.get("priors_hash") == ref.priors.content_hash:
        return current, False
    # a candidate fitted before with these priors on these data: reused, not fitted again
    data_hash = aggregate(modelled_episodes(database), codebook).fingerprint
    for mv in registry.versions():  # newest first
        if (mv.metadata.get("priors_hash") == ref.priors.content_hash
                and mv.metadata.get("data_hash") == data_hash):
            return mv, False
    if progress:
        progress(f"candidate fit with {ref.label} ({settings.sampler.chains} chains x "
                 f"{settings.sampler.draws} draws)")
    outcome = fit_and_register(
        settings, database, registry, codebook, promote=False, actor=actor,
        priors=(ref.priors, ref.label),
        extra_metadata={"fitted_as": CANDIDATE, "candidate_priors": ref.label,
                        "prior_set_id": ref.record["id"] if ref.record else None})
    return outcome.version, True


def _forecast_diff(registry: Registry, codebook: Codebook, va: str, vb: str,
                   scenario: Mapping[str, Any] | None) -> dict[str, Any]:
    from forecasting.serving.forecasts import ForecastEngine

    grids = [ForecastEngine.from_version(registry, v, codebook, max_draws=1000).grid(
        scenario, sort="partner") for v in (va, vb)]
    rows = []
    for fa, fb in zip(*grids, strict=True):
        ma, mb = fa["any_restriction"]["mean"], fb["any_restriction"]["mean"]
        rows.append({"partner": fa["partner"], "intel_type": fa["intel_type"],
                     "a": fa["any_restriction"], "b": fb["any_restriction"],
                     "difference": mb - ma})
    diffs = [abs(r["difference"]) for r in rows]
    rows.sort(key=lambda r: -abs(r["difference"]))
    return {"scenario": grids[0][0]["scenario"] if grids[0] else scenario,
            "cells": len(rows), "mean_abs_difference": sum(diffs) / max(len(diffs), 1),
            "max_abs_difference": max(diffs, default=0.0), "largest": rows[:FORECAST_ROWS]}


def compare_with_fits(settings: Settings, database: Database, registry: Registry,
                      codebook: Codebook, a: str, b: str, *, actor: str,
                      sampler: SamplerSettings | None = None,
                      loto_sampler: SamplerSettings | None = None, max_refits: int = 0,
                      scenario: Mapping[str, Any] | None = None, files: bool = True,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`compare_priors`, then each set's posterior on the current data: a candidate fit
    (stored, `fitted_as = "candidate"`, never promoted; the current version is used for the
    set it was fitted with), the forecasts they give side by side, and each one's
    leave-one-trigger-out score (stored with its version) with the paired difference.

    Slow (two fits and their LOTO, minutes): the CLI runs it (`forecast priors compare
    --fit`); the API offers the dry run only.
    """
    from forecasting.evaluation import loto
    from forecasting.evaluation.reports import comparison_report

    doc = compare_priors(codebook, database, settings, a, b, files=files)
    refs = [resolve(r, database, settings, files=files) for r in (a, b)]
    fit_settings = dataclasses.replace(settings, sampler=sampler) if sampler else settings
    versions = []
    for side, ref in zip(("a", "b"), refs, strict=True):
        mv, fitted = _version_for(ref, fit_settings, database, registry, codebook, actor,
                                  progress)
        versions.append(mv)
        doc[side] |= {"version": mv.version, "candidate": fitted or is_candidate(mv),
                      "verdict": mv.verdict, "reasons": mv.reasons}
    doc["forecasts"] = _forecast_diff(registry, codebook, versions[0].version,
                                      versions[1].version, scenario)
    scores = []
    for side, mv in zip(("a", "b"), versions, strict=True):
        if progress:
            progress(f"leave-one-trigger-out score of {doc[side]['label']} ({mv.version})")
        report = comparison_report(settings, database, codebook, registry=registry,
                                   version=mv.version, variants=[loto.SERVED],
                                   sampler=loto_sampler, max_refits=max_refits,
                                   progress=progress)
        full = report["models"][loto.SERVED]
        scores.append(full)
        doc[side]["loto"] = {"elpd_loo": full["elpd_loo"], "se": full["se"],
                             "p_loo": full["p_loo"], "n_high_k": full["n_high_k"],
                             "refits": full["refits"]}
    diff, se = loto.paired_difference(scores[1], scores[0])
    doc["loto"] = {
        "elpd_diff_b_minus_a": diff, "se": se, "n_triggers": len(scores[0]["pointwise"]["elpd"]),
        "rule": loto.RULE,
        "verdict": (("B" if diff > 0 else "A") + " predicts left-out triggers better"
                    if loto.distinguishable(diff, se) else
                    "the data cannot tell the two prior sets apart"),
    }
    return doc


# -- history ------------------------------------------------------------------------------------


def prior_history(database: Database, registry: Registry | None, limit: int = 50
                  ) -> list[dict[str, Any]]:
    """Every stored prior set, newest first: who submitted it, why, the statements behind
    it, and the model versions fitted with it (matched by the priors' content hash, so that
    candidate fits made before the set was stored count too)."""
    versions: dict[str, list[dict[str, Any]]] = {}
    if registry is not None:
        current = registry.current_or_none()
        for mv in registry.versions():
            versions.setdefault(mv.metadata.get("priors_hash"), []).append({
                "version": mv.version, "fitted_at": mv.fitted_at, "verdict": mv.verdict,
                "candidate": is_candidate(mv),
                "current": current is not None and mv.version == current.version})
    return [{"id": r["id"], "content_hash": r["content_hash"], "created_at": r["created_at"],
             "created_by": r["created_by"], "note": r["note"],
             "statements": (r.get("statements") or {}).get("statements"),
             "elicitation": {k: v for k, v in (r.get("statements") or {}).items()
                             if k != "statements"} or None,
             "versions": versions.get(r["content_hash"], [])}
            for r in database.priors.history(limit=limit)]
