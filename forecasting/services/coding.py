"""Coding quality, both faces (`forecast coding ...` and /v1/coding/...): reliability,
disagreements, adjudication (always queueing a refit), a sample for a second coder, and the
coding part of a fit (which episodes it is fed, and the reliability floor of its gate).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from forecasting.coding.agreement import FLOOR_SETTING, floor_check
from forecasting.coding.fields import CODED_FIELDS
from forecasting.coding.reliability import BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED, reliability
from forecasting.coding.sampling import blank_for_second_coder, stratified_sample
from forecasting.domain.codebook import Codebook
from forecasting.domain.episodes import (
    NATURAL_KEY,
    SOURCE_SEPARATOR,
    EpisodeValidationError,
    check_free_text,
    validate_episode,
)
from forecasting.settings import RequestLimits, Settings
from forecasting.store import Database
from forecasting.store.codings import CodingsImportError

if TYPE_CHECKING:  # the queue (huey) is only needed by the caller that made the service
    from forecasting.refits import RefitService

ADJUDICATION_FIELDS = tuple(CODED_FIELDS)


class AdjudicationError(ValueError):
    """An adjudication that names no field, an unknown field, or gives no reason."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def reliability_report(database: Database, settings: Settings, *,
                       samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
                       ) -> dict[str, Any]:
    """Alpha per coded field (overall and per coder pair) with bootstrap intervals, the
    tables behind them, how the episodes are coded, and the floor a refit's gate checks."""
    report = reliability(database.codings.values_by_episode(), samples=samples, seed=seed)
    floor = dict(settings.coding_alpha_floor)
    failures, notes = floor_check(report, floor)
    ids = database.episodes.frame()["id"].tolist()
    return report | {
        "coverage": database.codings.coverage(ids)["counts"],
        "floor": {"setting": FLOOR_SETTING, "required": floor, "failures": failures,
                  "notes": notes, "passed": not failures}}


def disagreements(database: Database) -> dict[str, Any]:
    """Every episode whose coders disagree and that awaits adjudication (held back from
    fits meanwhile), with the fields in dispute and each coder's value."""
    found = database.codings.disagreements()
    return {"total": len(found), "disagreements": found}


def adjudicate(database: Database, codebook: Codebook, refits: RefitService,
               key: tuple[str, str, str], values: Mapping[str, Any], reason: str, *,
               actor: str, limits: RequestLimits | None = None) -> dict[str, Any]:
    """Record the final value of a double-coded episode: the coded fields given in `values`
    (the others keep the episode's current value), with a reason. Written as a revision of
    the episode by `actor` (the adjudicator, who becomes its coder), audited; queues a refit.

    Raises AdjudicationError (fields, reason), EpisodeValidationError (a value the codebook
    refuses), UnknownEpisodeError, NotDoubleCodedError.
    """
    limits = limits or refits.settings.limits
    if not values:
        raise AdjudicationError("values", f"give the final value of at least one of "
                                f"{list(ADJUDICATION_FIELDS)}")
    for field in values:
        if field not in ADJUDICATION_FIELDS:
            raise AdjudicationError(f"values.{field}", f"not a coded field; adjudicate one of "
                                    f"{list(ADJUDICATION_FIELDS)}")
    reason = (reason or "").strip()
    if not reason:
        raise AdjudicationError("reason", "is required: say why this is the final value")
    try:
        check_free_text(reason)
    except ValueError as exc:
        raise AdjudicationError("reason", str(exc)) from None
    if len(reason) > limits.max_text_chars:
        raise AdjudicationError("reason", f"{len(reason)} characters; at most "
                                f"{limits.max_text_chars} are accepted "
                                "(setting FORECAST_LIMIT_MAX_TEXT_CHARS)")
    current = database.episodes.get(*key)  # UnknownEpisodeError when absent
    row = {k: current[k] for k in ("trigger_id", "trigger_type", "trigger_date", "severity",
                                   "alignment", "partner", "intel_type", "level", "confidence",
                                   "trigger_description", "notes")}
    row |= {"sources": SOURCE_SEPARATOR.join(current["sources"]), "coder": actor,
            "coded_at": dt.date.today().isoformat(), **values}
    episode = validate_episode(row, codebook, limits=limits)
    written = database.episodes.adjudicate(episode, reason, actor, codebook.version)
    refit = refits.request("episodes", actor)
    return {**dict(zip(NATURAL_KEY, key, strict=True)), **written, "reason": reason,
            "adjudicator": actor, "refit": refit}


def second_coder_sample(database: Database, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` episodes stratified by partner, level and confidence, as interchange rows with
    the coded fields blank: a file for a second coder to fill in and import."""
    rows = list(database.episodes.iter_rows())
    return [blank_for_second_coder(r) for r in stratified_sample(rows, n, seed)]


# A refit records alpha's interval from fewer resamples than the served report (seconds
# count in a refit); the gate reads alpha itself, which resampling does not change.
FIT_BOOTSTRAP_SAMPLES = 200


def _held_back(frame: pd.DataFrame, coverage: Mapping[str, Any]) -> pd.DataFrame:
    held = set(coverage["held_back"])
    return frame[~frame["id"].isin(held)].reset_index(drop=True) if held else frame


def modelled_episodes(database: Database) -> pd.DataFrame:
    """The episodes a fit is fed: every stored one but the disputed, held back until they are
    adjudicated. Backtests, comparisons and the ledger's baselines read these too, so that
    they judge the data the served model saw."""
    frame = database.episodes.frame()
    return _held_back(frame, database.codings.coverage(frame["id"].tolist()))


def fit_input(database: Database, frame: pd.DataFrame, settings: Settings, *,
              samples: int = FIT_BOOTSTRAP_SAMPLES
              ) -> tuple[pd.DataFrame, dict[str, Any], list[str]]:
    """The coding part of a fit: (the episodes it is fed, its metadata, gate reasons).

    Disputed episodes are held back; the metadata lists the ids of the agreed, adjudicated
    and held-back episodes (every other episode fed is single-coded), the reliability per
    field and the floor's outcome; the reasons name each field below its floor."""
    coverage = database.codings.coverage(frame["id"].tolist())
    fed = _held_back(frame, coverage)
    report = reliability(database.codings.values_by_episode(), samples=samples)
    floor = dict(settings.coding_alpha_floor)
    reasons, notes = floor_check(report, floor)
    metadata = {
        "coding_revision": database.codings.latest_change_id(),
        "coding": {**coverage, "fed": len(fed),
                   "reliability": {f: {k: e[k] for k in ("alpha", "ci95", "reading", "episodes")}
                                   for f, e in report["fields"].items()},
                   "double_coded": report["episodes"], "bootstrap_samples": samples,
                   "floor": {"required": floor, "passed": not reasons, "notes": notes}}}
    return fed, metadata, reasons


# -- moving the coders' work between instances (`forecast coding export|import`) ---------------

CODINGS_FORMAT = "forecast-codings/1"
_CODING_KEYS = {*NATURAL_KEY, "coder", "values", "recorded_at", "recorded_by"}
_ADJUDICATION_KEYS = {*NATURAL_KEY, "adjudicator", "reason", "values", "at"}


def export_codings(database: Database, codebook: Codebook) -> dict[str, Any]:
    """Every coder's codings and every adjudication, named by episode key: what `forecast
    export` (the episode interchange format) does not carry. Import the episodes first, then
    this document, into the other instance."""
    return {"format": CODINGS_FORMAT, "codebook_version": codebook.version,
            **database.codings.export_records()}


def import_codings(database: Database, codebook: Codebook, refits: RefitService,
                   document: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
    """Store an `export_codings` document, all or nothing: every record is checked first
    (CodingsImportError names each field at fault: `codings[3].values.level`), then they are
    appended in one transaction. Importing the same document again changes nothing; anything
    new queues a refit (the codings decide what a fit is fed)."""
    coded, decided = _checked_codings(document, codebook)
    summary = database.codings.import_records(coded, decided, actor)
    if summary["codings"] or summary["adjudications"]:
        summary["refit"] = refits.request("episodes", actor)
    return summary


def _checked_codings(document: Any, codebook: Codebook
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    errors: list[dict[str, str]] = []
    if not isinstance(document, Mapping):
        raise CodingsImportError([{"field": "document", "message": "must be a JSON object "
                                   "written by `forecast coding export`"}])
    if document.get("format") != CODINGS_FORMAT:
        errors.append({"field": "format", "message": f"{document.get('format')!r}; expected "
                       f"{CODINGS_FORMAT!r} (a file written by `forecast coding export`)"})
    unknown = sorted(set(document) - {"format", "codebook_version", "codings", "adjudications"})
    errors += [{"field": k, "message": "unknown key"} for k in unknown]
    out = []
    for name, keys, actor_key in (("codings", _CODING_KEYS, "coder"),
                                  ("adjudications", _ADJUDICATION_KEYS, "adjudicator")):
        rows = document.get(name, [])
        if not isinstance(rows, list):
            errors.append({"field": name, "message": "must be a list"})
            rows = []
        checked = [_checked_record(f"{name}[{i}]", r, keys, actor_key, codebook, errors)
                   for i, r in enumerate(rows)]
        out.append(checked)
    if errors:
        raise CodingsImportError(errors)
    return out[0], out[1]


def _checked_record(where: str, record: Any, keys: set[str], actor_key: str,
                    codebook: Codebook, errors: list[dict[str, str]]) -> dict[str, Any]:
    def problem(field: str, message: str) -> None:
        errors.append({"field": f"{where}.{field}" if field else where, "message": message})

    if not isinstance(record, Mapping):
        problem("", "must be an object")
        return {}
    for k in sorted(keys - set(record)):
        problem(k, "is required")
    for k in sorted(set(record) - keys):
        problem(k, "unknown key")
    if keys - set(record):
        return {}
    out = dict(record)
    for k in (*NATURAL_KEY, actor_key, "recorded_by", "reason"):
        if k in keys and (not isinstance(record[k], str) or not record[k].strip()):
            problem(k, "must be non-empty text")
        elif k in keys:
            try:
                check_free_text(record[k])
            except ValueError as exc:
                problem(k, str(exc))
    time_key = "recorded_at" if "recorded_at" in keys else "at"
    try:
        out[time_key] = dt.datetime.fromisoformat(record[time_key])
        if out[time_key].tzinfo is None:
            raise ValueError("no time zone")
    except (TypeError, ValueError):
        problem(time_key, f"{record[time_key]!r} is not an ISO 8601 time with its time zone")
    values = record["values"]
    if not isinstance(values, Mapping):
        problem("values", "must be an object of the episode's interchange fields")
        return out
    try:
        validate_episode({k: v for k, v in values.items() if v is not None}, codebook)
    except EpisodeValidationError as exc:
        for e in exc.errors:
            problem(f"values.{e.field}", e.message)
    for k in NATURAL_KEY:
        if values.get(k) != record[k]:
            problem(f"values.{k}", f"{values.get(k)!r} is not the record's {record[k]!r}")
    if actor_key == "coder" and values.get("coder") != record["coder"]:
        problem("values.coder", f"{values.get('coder')!r} is not the record's coder "
                f"{record['coder']!r}")
    return out
