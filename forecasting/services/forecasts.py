"""Live-event forecasts: a coded trigger's forecast, conditioned on its reactions coded so far.

"Israel has already compartmentalised after this trigger: how likely is Saudi Arabia to?"
`forecast query ... --trigger-id ID` and `GET /v1/forecasts?...&trigger_id=ID` both answer
through `live_forecast`: the trigger's coded episodes are read from the store now (not as the
model saw them when it was fitted), its scenario is the one they are coded with, and the
forecast engine conditions on every coded episode but the queried cell's own
(forecasting.serving.live_events). The answer echoes the episodes it rests on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from forecasting.domain.codebook import Codebook
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
