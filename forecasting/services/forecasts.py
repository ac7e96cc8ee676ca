"""Live-event forecasts: a coded trigger's forecast, conditioned on its reactions coded so far.

"Israel has already compartmentalised after this trigger: how likely is Saudi Arabia to?"
`forecast query ... --trigger-id ID` and `GET /v1/forecasts?...&trigger_id=ID` both answer
through `live_forecast`: the trigger's coded episodes are read from the store now (not as the
model saw them when it was fitted), its scenario is the one they are coded with, and the
forecast engine conditions on every coded episode but the queried cell's own
(forecasting.serving.live_events). The answer echoes the episodes it rests on.

`GET /v1/forecasts/grid?trigger_id=ID` answers through `live_grid`: every cell after the
trigger, each conditioned as `live_forecast` conditions it (the same numbers), computed once per
set of cells sharing a conditioning and kept per (model version, trigger, store revision).

`forecast query ... --explain` and `GET /v1/forecasts?...&explain=true` both answer through
`explained_forecast`: the forecast, its terms (forecasting.serving.explain) and the episodes it
rests on (forecasting.serving.evidence), read as the served version's fit saw them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from cachetools import LRUCache

from forecasting.domain.codebook import Codebook
from forecasting.serving.evidence import DEFAULT_LIMIT, evidence
from forecasting.serving.evidence import FIELDS as EVIDENCE_FIELDS
from forecasting.serving.explain import decompose, explain
from forecasting.serving.forecasts import CodedTrigger, ForecastEngine, Scenario, ScenarioError
from forecasting.store import Database, EpisodeFilter

SCENARIO_FIELDS = ("trigger_type", "severity", "alignment")
# what each conditioned episode shows, so that a forecaster sees what the answer rests on
ECHOED_FIELDS = ("partner", "intel_type", "level", "trigger_date", "sources", "confidence")


class UnknownTriggerError(LookupError):
    """No episode is coded with this trigger id."""

    field = "trigger_id"

    def __init__(self, trigger_id: str):
        self.trigger_id = trigger_id
        super().__init__(f"trigger_id: no episode is coded for trigger {trigger_id!r}; "
                         f"`forecast episodes` and GET /v1/episodes list the coded triggers")


class InconsistentTriggerError(ValueError):
    """A trigger's episodes disagree on a trigger-level field (its type, severity, alignment),
    so it has no one scenario to forecast under."""

    def __init__(self, trigger_id: str, field: str, values: Iterable):
        self.trigger_id, self.field = trigger_id, field
        self.values = sorted(values, key=str)
        super().__init__(
            f"{field}: the episodes of trigger {trigger_id!r} are coded with different values "
            f"({', '.join(map(str, self.values))}); revise them to one before forecasting "
            f"from this trigger")


def refuse_scenario(given: Iterable[str]) -> None:
    """With a trigger id, the trigger's coding fixes the scenario: asking for another is an
    error naming the first scenario field given (ScenarioError), never silently ignored."""
    given = set(given)
    for field in SCENARIO_FIELDS:
        if field in given:
            raise ScenarioError(field, "the trigger's coded scenario applies with trigger_id; "
                                "leave out trigger_type, severity and alignment")


def coded_trigger(database: Database, codebook: Codebook, trigger_id: str) -> CodedTrigger:
    """The trigger's episodes coded so far, and the scenario they are coded with.

    Episodes are in codebook order (partner, then intelligence type), each with
    ECHOED_FIELDS. Raises UnknownTriggerError if none is coded, InconsistentTriggerError if
    they disagree on the trigger's type, severity or alignment.
    """
    records = database.episodes.list(EpisodeFilter(trigger_id=(trigger_id,)))
    if not records:
        raise UnknownTriggerError(trigger_id)
    for field in SCENARIO_FIELDS:
        values = {r[field] for r in records}
        if len(values) > 1:
            raise InconsistentTriggerError(trigger_id, field, values)
    first = records[0]
    scenario = Scenario(first["trigger_type"], int(first["severity"]), int(first["alignment"]))
    partners = {code: i for i, code in enumerate(codebook.partner_codes)}
    types = {code: i for i, code in enumerate(codebook.intel_type_codes)}
    records.sort(key=lambda r: (partners.get(r["partner"], len(partners)), r["partner"],
                                types.get(r["intel_type"], len(types)), r["intel_type"]))
    episodes = tuple({field: r[field] for field in ECHOED_FIELDS} for r in records)
    return CodedTrigger(trigger_id=trigger_id, scenario=scenario, episodes=episodes)


def live_forecast(engine: ForecastEngine, database: Database, codebook: Codebook,
                  partner: str, intel_type: str, trigger_id: str) -> dict[str, Any]:
    """PARTNER restricting INTEL_TYPE after a coded trigger, given its other coded reactions.

    The forecast shape plus `trigger_id`, `conditioned_on` (the trigger's coded episodes but
    the queried cell's own), `observed_level` (the cell's own coded level, or None) and
    `draws_used`. The codes are checked before the trigger (UnknownCodeError, naming the
    field); NotInModelError for a model version without the trigger's cluster terms.
    """
    codebook.check("partner", partner)
    codebook.check("intel_type", intel_type)
    return engine.conditioned(partner, intel_type, coded_trigger(database, codebook, trigger_id))


# Live grids per process, keyed by (database, model version and its draws, trigger, store
# revision): a new episode moves the revision, so a kept grid is never stale; ~50 kB each.
LIVE_GRIDS_KEPT = 32
_live_grids: LRUCache[tuple, Any] = LRUCache(maxsize=LIVE_GRIDS_KEPT)
_live_grids_lock = threading.Lock()


def live_grid(engine: ForecastEngine, database: Database, codebook: Codebook, trigger_id: str,
              *, sort: str = "risk", limit: int | None = None, revision: int | None = None
              ) -> dict[str, Any]:
    """Every partner x type after a coded trigger, conditioned on its reactions coded so far.

    `engine.conditioned_grid`'s answer (the cells, each as `live_forecast` answers it, with
    its `observed_level`; the episodes conditioned on; the draws used) plus `store_revision`
    (`revision`: the store's latest revision, read before the episodes as the caller's ETag
    names it; read here when None), the model stamp and the count; the first `limit` cells
    in `sort` order if given.
    """
    if revision is None:
        revision = database.episodes.latest_revision_id()
    trigger = coded_trigger(database, codebook, trigger_id)
    key = (str(database.engine.url), engine.version, engine.n_draws, trigger_id, revision)
    with _live_grids_lock:
        stats = _live_grids.get(key)
    if stats is None:
        stats = engine.conditioned_grid_stats(trigger)
        with _live_grids_lock:
            _live_grids[key] = stats
    answer = engine.conditioned_grid(trigger, sort=sort, stats=stats)
    answer["forecasts"] = answer["forecasts"][:limit]
    return {"model": dict(engine.model_info), **answer, "store_revision": revision,
            "count": len(answer["forecasts"])}


# -- explanations and evidence (issue 17) ------------------------------------------------------


def episodes_as_fitted(database: Database, revision: int, partners: Iterable[str]
                       ) -> pd.DataFrame:
    """The episodes of `partners` as a fit that read store revision `revision` saw them."""
    return pd.DataFrame(database.episodes.values_at(revision, list(partners)),
                        columns=list(EVIDENCE_FIELDS))


def forecast_evidence(engine: ForecastEngine, database: Database, codebook: Codebook,
                      partner: str, intel_type: str, limit: int = DEFAULT_LIMIT
                      ) -> dict[str, Any]:
    """The coded episodes behind a cell's forecast (forecasting.serving.evidence), read as the
    served version's fit saw them where its metadata says which store revision that was, else
    as the store holds them now; `store` says which."""
    codebook.check("partner", partner)
    codebook.check("intel_type", intel_type)
    bloc = codebook.bloc_of(partner)
    partners = [code for code, p in codebook.partners.items() if p.bloc == bloc]
    current = database.episodes.latest_revision_id()
    fitted = engine.store_revision
    if fitted is None:
        frame = pd.DataFrame(database.episodes.list(EpisodeFilter(partner=tuple(partners))),
                             columns=list(EVIDENCE_FIELDS))
        store = {"revision": current, "as_fitted": False,
                 "note": f"model version {engine.version} does not record the store revision "
                         "it was fitted on: the episodes are listed as the store holds them now"}
    else:
        frame = episodes_as_fitted(database, int(fitted), partners)
        changed = (database.episodes.changed_since(int(fitted), partners)
                   if current > fitted else 0)
        store = {"revision": int(fitted), "as_fitted": True, "current_revision": current,
                 "changed_since": changed,
                 "note": (f"episodes as model version {engine.version} was fitted on them "
                          f"(store revision {fitted})"
                          + (f"; {changed} episode(s) of these partners were coded or revised "
                             f"since (store revision {current}), which the next refit will see"
                             if changed else ""))}
    return evidence(frame, codebook, partner, intel_type, limit) | {"store": store}


def explained_forecast(engine: ForecastEngine, database: Database, codebook: Codebook,
                       partner: str, intel_type: str, scenario: Mapping | None = None,
                       trigger_id: str | None = None, limit: int = DEFAULT_LIMIT
                       ) -> dict[str, Any]:
    """`forecast query ... --explain` and `GET /v1/forecasts?...&explain=true`: the forecast
    (for a new trigger under `scenario`, or live after the coded `trigger_id`) with its
    `explanation` (forecasting.serving.explain) and its `evidence`."""
    codebook.check("partner", partner)
    codebook.check("intel_type", intel_type)
    if trigger_id is None:
        scenario = Scenario.from_mapping(scenario)
        answer = engine.forecast(partner, intel_type, scenario.trigger_type, scenario.severity,
                                 scenario.alignment)
        explanation = explain(engine, partner, intel_type, scenario)
    else:
        trigger = coded_trigger(database, codebook, trigger_id)
        # conditioning is the costly part: the forecast takes its levels from the explanation's
        d = decompose(engine, partner, intel_type, trigger=trigger)
        answer = engine.conditioned(partner, intel_type, trigger, levels=d["levels"])
        explanation = explain(engine, partner, intel_type, trigger=trigger, decomposition=d)
    answer["explanation"] = explanation
    answer["evidence"] = forecast_evidence(engine, database, codebook, partner, intel_type,
                                           limit)
    return answer
