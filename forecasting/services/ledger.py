"""The forecast ledger (issue 19): register a trigger, freeze and update its forecasts, score
them when outcomes are coded, the scorecard, corrections and the chain check.

`forecast ledger ...` and /v1/ledger call these functions. Every write appends entries to one
hash chain (forecasting/store/ledger.py); nothing is edited or deleted.

- `register`: a trigger (coded already, or announced before any outcome is known) and the
  cells at stake; the current version's forecast of every cell without a coded outcome is
  frozen, beside the backtests' baselines fitted on the episodes coded at that moment.
- `update`: the trigger's still-open cells forecast again (after reactions are coded, or a new
  version is promoted) and appended; a cell whose forecast did not change gets no entry.
  Updates are a forecaster's deliberate act (`forecast ledger update`), never automatic: a
  frozen forecast is what someone chose to put on the record at that time.
- `resolve`: runs after every episode import that changed something (the import service's
  hook) and before every read of the record: each frozen forecast made before its cell's
  outcome was coded is scored; a revised outcome (another level) is scored again, naming the
  episode revision. No user step is needed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from forecasting.domain.codebook import Codebook
from forecasting.evaluation.baselines import BASELINES
from forecasting.ledger import resolution
from forecasting.ledger.chain import ChainCheck, check_chain
from forecasting.services.coding import modelled_episodes
from forecasting.services.forecasts import coded_trigger
from forecasting.serving.forecasts import CodedTrigger, ForecastEngine, NotInModelError, Scenario
from forecasting.store import Database, EpisodeFilter
from forecasting.store.ledger import Appender, LedgerStore
from forecasting.store.transactions import retrying

log = logging.getLogger(__name__)
SYSTEM_ACTOR = "ledger"  # who appends the scores: nobody asked, the outcome arrived
TRIGGER_FIELDS = ("trigger_type", "trigger_date", "severity", "alignment")
MAX_TEXT = 4000


class LedgerError(ValueError):
    """A ledger request that cannot be carried out; the message starts with the field."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


class LedgerConflictError(LedgerError):
    """The request contradicts the record (a trigger registered twice, coded otherwise)."""


class LedgerNotFoundError(LookupError):
    """No such registered trigger or entry."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class Registration:
    """A trigger put on the record. For a trigger already coded, the scenario fields may be
    left out (its coding gives them); given, they must agree with it."""

    trigger_id: str
    partners: Sequence[str]
    intel_types: Sequence[str] = ()  # empty: every type of the codebook
    trigger_type: str | None = None
    trigger_date: str | None = None  # YYYY-MM-DD
    severity: int | None = None
    alignment: int | None = None
    description: str = ""
    sources: Sequence[str] = field(default_factory=tuple)


def _store(database: Database) -> LedgerStore:
    return LedgerStore(database.engine)


def _append(database: Database, what: str, work) -> Any:
    """Run `work(appender)` in one locked transaction, again after a transient conflict."""
    def attempt():
        with _store(database).appending() as appender:
            return work(appender)
    return retrying(attempt, what)


# -- registering and freezing ---------------------------------------------------------------


def _checked(codebook: Codebook, reg: Registration, coded: CodedTrigger | None) -> dict:
    """The trigger's fields, validated, from the request or from its coding."""
    if not reg.trigger_id or len(reg.trigger_id) > 120:
        raise LedgerError("trigger_id", "must be 1-120 characters")
    if not reg.partners:
        raise LedgerError("partners", "name at least one partner at stake")
    for name, value in (("description", reg.description),
                        ("sources", " | ".join(reg.sources))):
        if len(value) > MAX_TEXT:
            raise LedgerError(name, f"at most {MAX_TEXT} characters")
    for code in reg.partners:
        codebook.check("partner", code)
    for code in reg.intel_types:
        codebook.check("intel_type", code)
    given = {name: getattr(reg, name) for name in TRIGGER_FIELDS}
    if coded is not None:
        first = coded.episodes[0] if coded.episodes else {}
        known = {**coded.scenario.as_dict(), "trigger_date": str(first.get("trigger_date"))}
        for name, value in given.items():
            if value is not None and str(value) != str(known[name]):
                raise LedgerConflictError(name, f"the trigger is coded with {known[name]!r}, "
                                                f"not {value!r}; leave it out or match the coding")
        values = known
    else:
        for name, value in given.items():
            if value is None:
                raise LedgerError(name, "required for a trigger with no coded episode")
        values = dict(given)
    codebook.check("trigger_type", values["trigger_type"])
    for name in ("severity", "alignment"):
        if isinstance(values[name], bool):
            raise LedgerError(name, "must be a whole number, not true or false")
        codebook.check(name, int(values[name]))
        values[name] = int(values[name])
    try:
        values["trigger_date"] = dt.date.fromisoformat(str(values["trigger_date"])).isoformat()
    except ValueError:
        raise LedgerError("trigger_date", "must be a date written YYYY-MM-DD") from None
    return values


def _coded(database: Database, codebook: Codebook, trigger_id: str) -> CodedTrigger | None:
    if not database.episodes.count(EpisodeFilter(trigger_id=(trigger_id,))):
        return None
    return coded_trigger(database, codebook, trigger_id)


def _baselines(database: Database, scenario: Scenario, cells: list[tuple[str, str]]
               ) -> tuple[dict[str, list[list[float]]], int]:
    """Each backtest baseline's P(level) per cell, fitted on the episodes a fit would be fed now."""
    train = modelled_episodes(database)
    if train.empty or not cells:
        return {}, len(train)
    test = pd.DataFrame([{"partner": p, "intel_type": t, **scenario.as_dict()} for p, t in cells])
    out = {}
    for name, fit_predict in BASELINES.items():
        probs = fit_predict(train, test)
        out[name] = [resolution.level_probabilities(
            {"levels": {str(k): {"mean": float(row[k])} for k in range(4)}}) for row in probs]
    return out, len(train)


def _forecast(engine: ForecastEngine, trigger: CodedTrigger, partner: str, intel_type: str
              ) -> dict:
    """The live-event forecast (conditioned on the reactions coded so far); a version without
    the trigger terms that conditioning needs gives its scenario forecast instead."""
    try:
        answer = engine.conditioned(partner, intel_type, trigger)
    except NotInModelError as exc:
        if exc.field != "trigger_id":
            raise
        answer = engine.forecast(partner, intel_type, **trigger.scenario.as_dict())
        answer["conditioned_on"] = []
    answer["conditioned_on"] = [{k: e[k] for k in ("partner", "intel_type", "level")}
                                for e in answer.get("conditioned_on", [])]
    for key in ("not_conditioned_on", "observed_level", "trigger_id"):
        answer.pop(key, None)
    return answer


def _freeze(database: Database, engine: ForecastEngine, codebook: Codebook, trigger_id: str,
            values: dict, cells: list[tuple[str, str]], reason: str, note: str = ""
            ) -> list[dict]:
    """The payloads of the cells' forecast entries: the served forecast, its level
    probabilities, and the baselines' beside it (and the forecaster's note, if any)."""
    scenario = Scenario(values["trigger_type"], values["severity"], values["alignment"])
    coded = _coded(database, codebook, trigger_id)
    trigger = CodedTrigger(trigger_id, scenario, coded.episodes if coded else ())
    baselines, n_train = _baselines(database, scenario, cells)
    out = []
    for i, (partner, intel_type) in enumerate(cells):
        answer = _forecast(engine, trigger, partner, intel_type)
        out.append({
            "partner": partner, "intel_type": intel_type,
            "model_version": answer["model"]["version"],
            "payload": {"reason": reason, "forecast": answer,
                        "probs": {resolution.MODEL: resolution.level_probabilities(answer),
                                  **{name: p[i] for name, p in baselines.items()}},
                        "baselines_fitted_on": n_train, **({"note": note} if note else {})}})
    return out


def _append_forecasts(appender: Appender, trigger_id: str, actor: str, frozen: list[dict],
                      refers_to: int) -> list[dict]:
    return [appender.append("forecast", trigger_id, actor, f["payload"], partner=f["partner"],
                            intel_type=f["intel_type"], model_version=f["model_version"],
                            refers_to=refers_to) for f in frozen]


def register(database: Database, engine: ForecastEngine, codebook: Codebook,
             reg: Registration, actor: str) -> dict[str, Any]:
    """Put a trigger on the record and freeze the forecast of every cell at stake whose
    outcome is not coded yet. A trigger is registered once (LedgerConflictError after)."""
    coded = _coded(database, codebook, reg.trigger_id) if reg.trigger_id else None
    values = _checked(codebook, reg, coded)
    if _registration(database, reg.trigger_id, missing_ok=True):
        raise LedgerConflictError("trigger_id", f"trigger {reg.trigger_id!r} is registered "
                                  "already; `forecast ledger update` appends newer forecasts")
    types = list(reg.intel_types) or list(codebook.intel_type_codes)
    cells = list(itertools.product(dict.fromkeys(reg.partners), dict.fromkeys(types)))
    outcomes = _store(database).outcomes([reg.trigger_id])
    open_cells = [c for c in cells if (reg.trigger_id, *c) not in outcomes]
    frozen = _freeze(database, engine, codebook, reg.trigger_id, values, open_cells,
                     "registered")
    payload = {**values, "trigger_id": reg.trigger_id, "description": reg.description,
               "sources": list(reg.sources), "cells": [list(c) for c in cells],
               "coded_before_registration": [list(c) for c in cells if c not in open_cells],
               "episodes_coded": len(coded.episodes) if coded else 0}

    def work(appender: Appender):
        if appender.registered(reg.trigger_id):  # a concurrent registration won
            raise LedgerConflictError("trigger_id", f"trigger {reg.trigger_id!r} is registered "
                                      "already")
        entry = appender.append("trigger", reg.trigger_id, actor, payload)
        return {"trigger": entry,
                "forecasts": _append_forecasts(appender, reg.trigger_id, actor, frozen,
                                               entry["seq"])}

    done = _append(database, "ledger register", work)
    log.info("%s registered trigger %s: %d forecasts frozen", actor, reg.trigger_id,
             len(done["forecasts"]))
    return done


def _registration(database: Database, trigger_id: str, missing_ok: bool = False
                  ) -> dict | None:
    """The trigger's registration entry; LedgerNotFoundError unless `missing_ok`."""
    entries = _store(database).entries(trigger_id=trigger_id, kinds=["trigger"])
    if not entries:
        if missing_ok:
            return None
        raise LedgerNotFoundError("trigger_id", f"trigger {trigger_id!r} is not registered in "
                                  "the ledger; `forecast ledger list` shows those that are")
    return entries[0]


def update(database: Database, engine: ForecastEngine, codebook: Codebook, trigger_id: str,
           actor: str, note: str = "") -> dict[str, Any]:
    """Forecast the trigger's open cells again and append those that changed (another model
    version, other reactions coded, other numbers); `note` (why now) goes with each."""
    if len(note) > MAX_TEXT:
        raise LedgerError("note", f"at most {MAX_TEXT} characters")
    reg = _registration(database, trigger_id)
    if reg["seq"] in _voided(_store(database).entries(kinds=["correction"])):
        raise LedgerConflictError("trigger_id", f"trigger {trigger_id!r} was voided by a "
                                  "correction; register it under another id")
    outcomes = _store(database).outcomes([trigger_id])
    cells = [tuple(c) for c in reg["payload"]["cells"]]
    open_cells = [c for c in cells if (trigger_id, *c) not in outcomes]
    latest = {}
    for entry in _store(database).entries(trigger_id=trigger_id, kinds=["forecast"]):
        latest[(entry["partner"], entry["intel_type"])] = entry
    frozen = _freeze(database, engine, codebook, trigger_id, reg["payload"], open_cells,
                     "update", note)

    def same(f: dict) -> bool:
        before = latest.get((f["partner"], f["intel_type"]))
        return (before is not None and before["model_version"] == f["model_version"]
                and before["payload"]["probs"] == f["payload"]["probs"]
                and before["payload"]["forecast"].get("conditioned_on")
                == f["payload"]["forecast"].get("conditioned_on"))

    changed = [f for f in frozen if not same(f)]
    appended = _append(database, "ledger update",
                       lambda a: _append_forecasts(a, trigger_id, actor, changed, reg["seq"]))
    return {"trigger_id": trigger_id, "forecasts": appended,
            "unchanged": [[f["partner"], f["intel_type"]] for f in frozen if same(f)],
            "resolved": [list(c) for c in cells if c not in open_cells]}


def update_open(database: Database, engine: ForecastEngine, codebook: Codebook, actor: str,
                note: str = "") -> list[dict[str, Any]]:
    """`update` of every registered trigger that is not voided and has an open cell (what a
    scheduled job runs after refits and codings)."""
    store = _store(database)
    entries = store.entries(kinds=["trigger", "correction"])
    voided = _voided(e for e in entries if e["kind"] == "correction")
    triggers = [e for e in entries if e["kind"] == "trigger" and e["seq"] not in voided]
    outcomes = store.outcomes({e["trigger_id"] for e in triggers})
    return [update(database, engine, codebook, e["trigger_id"], actor, note) for e in triggers
            if any((e["trigger_id"], *cell) not in outcomes for cell in e["payload"]["cells"])]


# -- resolution -----------------------------------------------------------------------------


def _voided(corrections: Iterable[dict]) -> set[int]:
    return {c["refers_to"] for c in corrections if c["payload"].get("void")}


def _pending(store: LedgerStore) -> list[tuple[dict, dict, dict | None]]:
    """(forecast entry, outcome now, its latest score) for every score owed: a forecast made
    before its outcome was coded, not scored yet or scored against another level."""
    forecasts = store.entries(kinds=["forecast"], payloads=False)
    if not forecasts:
        return []
    entries = store.entries(kinds=["score", "correction"])
    voided = _voided(e for e in entries if e["kind"] == "correction")
    outcomes = store.outcomes({e["trigger_id"] for e in forecasts})
    latest_score = {}
    for e in entries:
        if e["kind"] == "score":
            latest_score[e["refers_to"]] = e
    owed = []
    for f in forecasts:
        outcome = outcomes.get((f["trigger_id"], f["partner"], f["intel_type"]))
        if (outcome is None or f["seq"] in voided or f["refers_to"] in voided
                or dt.datetime.fromisoformat(f["recorded_at"])
                >= dt.datetime.fromisoformat(outcome["coded_at"])):
            continue
        score = latest_score.get(f["seq"])
        if score is None or score["payload"]["outcome"]["level"] != outcome["level"]:
            owed.append((f, outcome, score))
    full = {e["seq"]: e for e in store.entries(seqs=[f["seq"] for f, _, _ in owed])} if owed else {}
    return [(full[f["seq"]], outcome, score) for f, outcome, score in owed]


def resolve(database: Database, actor: str = SYSTEM_ACTOR) -> list[dict]:
    """Score every frozen forecast whose outcome is coded (or revised to another level) and
    append the scores; returns the score entries appended (none when nothing is owed)."""
    store = _store(database)
    if not _pending(store):  # the common case, without taking the write lock
        return []

    def work(appender: Appender):
        scored = []
        for f, outcome, previous in _pending(store):
            level = outcome["level"]
            payload = {"forecast": f["seq"], "outcome": outcome,
                       "lead_days": resolution.lead_days(f["recorded_at"], outcome["coded_at"]),
                       **resolution.score_forecast(f["payload"]["probs"], level),
                       "supersedes": previous["seq"] if previous else None,
                       "miss": resolution.is_miss(f["payload"]["probs"][resolution.MODEL],
                                                  level)}
            scored.append(appender.append(
                "score", f["trigger_id"], actor, payload, partner=f["partner"],
                intel_type=f["intel_type"], model_version=f["model_version"],
                refers_to=f["seq"]))
        return scored

    scored = _append(database, "ledger scores", work)
    if scored:
        log.info("ledger: %d forecasts scored", len(scored))
    return scored


def resolve_after_import(database: Database) -> None:
    """The episode import's hook: score what the new codings resolve. A failure is logged, not
    raised: the episodes are stored, and the next read of the record scores them."""
    try:
        resolve(database)
    except Exception:  # noqa: BLE001 - the import succeeded; scoring is retried on read
        log.exception("ledger: scoring after an import failed; it is retried on the next read")


# -- reading ----------------------------------------------------------------------------------


def _cells(entries: list[dict], outcomes: dict) -> list[dict]:
    """One row per registered cell: open or resolved, its latest forecast and score."""
    voided = _voided(e for e in entries if e["kind"] == "correction")
    latest: dict[tuple, dict] = {}
    scores: dict[int, dict] = {}
    for e in entries:
        if e["kind"] == "forecast" and e["seq"] not in voided:
            latest[(e["trigger_id"], e["partner"], e["intel_type"])] = e
        elif e["kind"] == "score":
            scores[e["refers_to"]] = e
    rows = []
    for reg in (e for e in entries if e["kind"] == "trigger"):
        n_frozen = {}
        for e in entries:
            if e["kind"] == "forecast" and e["trigger_id"] == reg["trigger_id"]:
                key = (e["partner"], e["intel_type"])
                n_frozen[key] = n_frozen.get(key, 0) + 1
        for partner, intel_type in reg["payload"]["cells"]:
            key = (reg["trigger_id"], partner, intel_type)
            forecast, outcome = latest.get(key), outcomes.get(key)
            score = scores.get(forecast["seq"]) if forecast else None
            rows.append({
                "trigger_id": reg["trigger_id"], "partner": partner, "intel_type": intel_type,
                "status": "resolved" if outcome else "open",
                "voided": reg["seq"] in voided,
                "forecasts": n_frozen.get((partner, intel_type), 0),
                "latest": None if forecast is None else {
                    "seq": forecast["seq"], "recorded_at": forecast["recorded_at"],
                    "model_version": forecast["model_version"],
                    "p_any": round(1 - forecast["payload"]["probs"][resolution.MODEL][0], 4),
                    "probs": forecast["payload"]["probs"][resolution.MODEL]},
                "outcome": None if outcome is None else {
                    k: outcome[k] for k in ("level", "revision", "revision_id", "coded_at")},
                "score": None if score is None else {
                    "seq": score["seq"], **score["payload"]["scores"][resolution.MODEL],
                    "coverage90": score["payload"]["coverage90"][resolution.MODEL],
                    "miss": score["payload"]["miss"]}})
    return rows


STATUSES = ("open", "resolved")


def list_forecasts(database: Database, status: str | None = None) -> dict[str, Any]:
    """Every registered cell with its latest frozen forecast, outcome and score."""
    if status is not None and status not in STATUSES:
        raise LedgerError("status", f"Requested status '{status}' but it must be one of "
                                    f"{list(STATUSES)}")
    resolve(database)
    store = _store(database)
    entries = store.entries()
    rows = _cells(entries, store.outcomes({e["trigger_id"] for e in entries}))
    if status:
        rows = [r for r in rows if r["status"] == status]
    return {"forecasts": rows,
            "triggers": len({r["trigger_id"] for r in rows}),
            "open": sum(r["status"] == "open" for r in rows),
            "resolved": sum(r["status"] == "resolved" for r in rows)}


def show(database: Database, trigger_id: str) -> dict[str, Any]:
    """A registered trigger's whole record: every entry, oldest first, and its cells now."""
    _registration(database, trigger_id)
    resolve(database)
    store = _store(database)
    entries = store.entries(trigger_id=trigger_id)
    corrections = [c for c in store.entries(kinds=["correction"])
                   if c["refers_to"] in {e["seq"] for e in entries}
                   and c["trigger_id"] != trigger_id]
    every = sorted(entries + corrections, key=lambda e: e["seq"])
    return {"trigger_id": trigger_id, "entries": every,
            "cells": _cells(every, store.outcomes([trigger_id]))}


def _scored_rows(database: Database) -> list[dict]:
    store = _store(database)
    entries = store.entries()
    voided = _voided(e for e in entries if e["kind"] == "correction")
    forecasts = {e["seq"]: e for e in entries if e["kind"] == "forecast"}
    current = {}
    for e in entries:
        if e["kind"] == "score":
            current[e["refers_to"]] = e
    rows = []
    for seq, score in sorted(current.items()):
        f = forecasts[seq]
        if seq in voided or f["refers_to"] in voided or score["seq"] in voided:
            continue
        rows.append({"seq": seq, "trigger_id": f["trigger_id"], "partner": f["partner"],
                     "intel_type": f["intel_type"], "model_version": f["model_version"],
                     "made": f["recorded_at"], "probs": f["payload"]["probs"][resolution.MODEL],
                     "level": score["payload"]["outcome"]["level"],
                     "lead_days": score["payload"]["lead_days"],
                     "scores": score["payload"]["scores"],
                     "coverage90": score["payload"]["coverage90"]})
    return rows


def scorecard(database: Database, n_boot: int = 2000) -> dict[str, Any]:
    """The live record's scorecard (forecasting.ledger.resolution.scorecard)."""
    resolve(database)
    return resolution.scorecard(_scored_rows(database), n_boot=n_boot)


def reliability_plot(database: Database) -> bytes:
    """The live record's reliability diagram (PNG); LedgerNotFoundError before any score."""
    card = scorecard(database, n_boot=1)
    if not card["reliability"]:
        raise LedgerNotFoundError("scorecard", "no frozen forecast has been scored yet: the "
                                  "diagram appears once an outcome of a registered trigger "
                                  "is coded")
    return resolution.reliability_png(card)


# -- corrections and the chain ----------------------------------------------------------------


def correct(database: Database, seq: int, actor: str, reason: str, void: bool = False
            ) -> dict[str, Any]:
    """Append a correction of entry `seq`, with who and why. `void` withdraws a trigger's
    registration (all its forecasts) or one forecast from the scorecard; the entries stay."""
    reason = (reason or "").strip()
    if not reason:
        raise LedgerError("reason", "say why the entry is corrected")
    if len(reason) > MAX_TEXT:
        raise LedgerError("reason", f"at most {MAX_TEXT} characters")
    found = _store(database).entries(seqs=[seq])
    if not found:
        raise LedgerNotFoundError("seq", f"the ledger has no entry {seq}")
    target = found[0]
    if void and target["kind"] not in ("trigger", "forecast"):
        raise LedgerError("void", f"only a trigger or a forecast can be voided; entry {seq} "
                                  f"is a {target['kind']}")
    payload = {"corrects": seq, "kind_corrected": target["kind"], "reason": reason,
               "void": bool(void)}
    return _append(database, "ledger correction", lambda a: a.append(
        "correction", target["trigger_id"], actor, payload, partner=target["partner"],
        intel_type=target["intel_type"], refers_to=seq))


def verify(database: Database) -> ChainCheck:
    """Recompute the whole chain from the stored entries."""
    return check_chain(_store(database).stored_rows())
