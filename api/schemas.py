"""Request and response schemas: they validate requests and generate /openapi.json."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from forecasting.serving.forecasts import Scenario

Ordinal = Annotated[int, Field(ge=0, le=3)]
Code = Annotated[str, Field(min_length=1, max_length=64)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def model_json_schema(cls, *args, **kwargs) -> dict[str, Any]:
        # flask-openapi3 asks for the query model's schema on every request; building it
        # costs milliseconds, so build it once per model and hand out copies.
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _SCHEMAS:
            _SCHEMAS[key] = super().model_json_schema(*args, **kwargs)
        return dict(_SCHEMAS[key])  # top-level copy: the spec builder pops "$defs"


_SCHEMAS: dict[tuple, dict[str, Any]] = {}


# --- forecasts ----------------------------------------------------------------------------
# Scenario defaults are the forecast engine's (forecasting.serving.forecasts.Scenario).
class ScenarioQuery(Strict):
    trigger_type: Code = Field(Scenario.trigger_type, description="Trigger type code")
    severity: Ordinal = Field(Scenario.severity, description="Trigger severity 0-3")
    alignment: Ordinal = Field(Scenario.alignment,
                               description="Perceived US alignment with the adversary 0-3")


class ForecastQuery(ScenarioQuery):
    partner: Code = Field(description="Partner code, e.g. ISR")
    intel_type: Code = Field(description="Intelligence type code, e.g. humint")


TriggerId = Annotated[str, Field(min_length=1, max_length=120)]


class OneForecastQuery(ForecastQuery):
    trigger_id: TriggerId | None = Field(
        None, description="A coded trigger: the forecast conditions on its reactions coded so "
                          "far, under the scenario the trigger is coded with (give no "
                          "trigger_type, severity or alignment with it)")


class GridQuery(ScenarioQuery):
    sort: Literal["risk", "partner", "intel_type"] = "risk"
    limit: Annotated[int, Field(ge=1, le=10_000)] | None = None


class CompareQuery(Strict):
    partner: str | None = Field(None, description="Comma-separated partner codes (default: all)")
    intel_type: str | None = Field(None, description="Comma-separated types (default: all)")
    trigger_type_a: Code = Scenario.trigger_type
    severity_a: Ordinal = Scenario.severity
    alignment_a: Ordinal = Scenario.alignment
    # b: by default the same scenario at the gravest severity
    trigger_type_b: Code = Scenario.trigger_type
    severity_b: Ordinal = 3
    alignment_b: Ordinal = Scenario.alignment


class Summary(BaseModel):
    mean: float
    median: float
    ci50: Annotated[list[float], Field(min_length=2, max_length=2)]
    ci90: Annotated[list[float], Field(min_length=2, max_length=2)]


class ScenarioDoc(BaseModel):
    """A forecast's scenario as answered (the engine's Scenario, as JSON)."""

    trigger_type: str
    severity: int
    alignment: int


class ModelStamp(BaseModel):
    version: str
    fitted_at: str
    episodes: int
    verdict: Literal["pass", "fail"]
    draws_used: int | None = Field(
        None, description="Present when the fit had more posterior draws than "
                          "FORECAST_LIMIT_MAX_DRAWS: the draws the answer was computed from "
                          "(thinned evenly within each chain)")


class Forecast(BaseModel):
    partner: str
    intel_type: str
    scenario: ScenarioDoc
    any_restriction: Summary
    levels: dict[Literal["0", "1", "2", "3"], Summary]
    model: ModelStamp


class ConditionedEpisode(BaseModel):
    """One coded reaction a live forecast conditions on."""

    partner: str
    intel_type: str
    level: int
    trigger_date: str
    sources: list[str]
    confidence: str


class LiveForecast(Forecast):
    """A forecast for a coded trigger, conditioned on its reactions coded so far."""

    trigger_id: str
    conditioned_on: list[ConditionedEpisode] = Field(
        description="The trigger's coded episodes the answer conditions on: all of them but "
                    "the queried cell's own")
    observed_level: int | None = Field(
        description="The queried cell's own coded level after this trigger, if coded")
    draws_used: int = Field(description="Posterior draws the conditioning was computed from")
    not_conditioned_on: list[ConditionedEpisode] | None = Field(
        None, description="Coded episodes of partners or types the model version predates "
                          "(coded since its fit): listed, not used; refit to use them")


class ForecastAnswer(RootModel[LiveForecast | Forecast]):
    """A forecast; with trigger_id, a live forecast (conditioned on the coded reactions)."""


class BatchBody(Strict):
    queries: Annotated[list[ForecastQuery], Field(min_length=1, max_length=1000)]


class ForecastList(BaseModel):
    model: ModelStamp
    count: int
    forecasts: list[Forecast]


class GridResponse(ForecastList):
    scenario: ScenarioDoc


class Difference(Summary):
    prob_positive: float = Field(description="Posterior probability that b exceeds a")


class Comparison(BaseModel):
    partner: str
    intel_type: str
    a: Forecast
    b: Forecast
    difference: Difference


class CompareResponse(BaseModel):
    model: ModelStamp
    scenario_a: ScenarioDoc
    scenario_b: ScenarioDoc
    comparisons: list[Comparison]


# --- vocabulary -----------------------------------------------------------------------------
class Vocab(BaseModel):
    version: str
    blocs: list[dict[str, Any]]
    partners: list[dict[str, Any]]
    intel_types: list[dict[str, Any]]
    trigger_types: list[dict[str, Any]]
    levels: list[dict[str, Any]]
    severity: list[dict[str, Any]]
    alignment: list[dict[str, Any]]
    confidence: list[dict[str, Any]]


# --- episodes -------------------------------------------------------------------------------
class EpisodeQuery(Strict):
    partner: Code | None = None
    intel_type: Code | None = None
    trigger_type: Code | None = None
    trigger_id: Annotated[str, Field(max_length=120)] | None = None
    level: Ordinal | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    offset: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class EpisodeKey(BaseModel):
    trigger_id: Annotated[str, Field(min_length=1, max_length=120)]
    partner: Code
    intel_type: Code


class EpisodeRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    trigger_id: str
    trigger_type: str
    trigger_date: str
    severity: int
    alignment: int
    partner: str
    intel_type: str
    level: int
    sources: list[str]
    coder: str
    confidence: str
    trigger_description: str
    coded_at: str
    notes: str
    revision: int
    codebook_version: str
    created_at: str
    updated_at: str


class EpisodeWithHistory(EpisodeRecord):
    history: list[dict[str, Any]]


class EpisodePage(BaseModel):
    total: int
    limit: int
    offset: int
    episodes: list[EpisodeRecord]


class ImportResult(BaseModel):
    inserted: int
    revised: int
    unchanged: int
    audit_id: int | None
    refit: dict[str, Any] | None = None


# --- models ---------------------------------------------------------------------------------
class VersionPath(BaseModel):
    version: Annotated[str, Field(min_length=1, max_length=64)]


class PlotPath(VersionPath):
    name: Annotated[str, Field(min_length=1, max_length=64)]


class ModelSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: str
    fitted_at: str
    episodes: int
    verdict: Literal["pass", "fail"]
    reasons: list[str]
    current: bool


class ModelList(BaseModel):
    current: str | None
    models: list[ModelSummary]


class ModelDetail(ModelSummary):
    metadata: dict[str, Any]


class Diagnostics(BaseModel):
    version: str
    verdict: Literal["pass", "fail"]
    reasons: list[str]
    diagnostics: dict[str, Any]


class ComparisonRow(BaseModel):
    """One model in a leave-one-trigger-out comparison, best first."""

    model: str = Field(description="Variant name (full is the served model)")
    rank: int
    elpd_loo: float = Field(description="Sum over triggers of the held-out log predictive "
                                        "density")
    se: float | None
    elpd_diff: float = Field(description="elpd_loo minus the best model's")
    dse: float | None = Field(description="SE of elpd_diff, paired over triggers")
    p_worse: float | None = Field(description="P(worse than the best), normal approximation")
    p_loo: float
    weight: float | None = Field(description="Stacking weight")
    n_high_k: int = Field(description="Triggers whose Pareto k exceeded the threshold")
    refits: int = Field(description="Of those, refitted exactly without the trigger")
    high_k_kept_psis: int = Field(description="Of those, kept at their PSIS estimate (cap)")
    verdict: str


class DifferenceToServed(BaseModel):
    elpd_diff: float = Field(description="elpd_loo of the variant minus the served model's")
    dse: float | None = Field(description="SE of elpd_diff, paired over triggers")
    p_better: float | None = Field(
        None, description="P(the variant is better), normal approximation")
    verdict: str


class TriggerComparison(BaseModel):
    """Leave-one-trigger-out comparison of a version's model with simpler variants."""

    model_config = ConfigDict(extra="allow")
    version: str
    unit: Literal["trigger"]
    served: str
    models_compared: list[str]
    n_triggers: int
    n_episodes: int
    data_matches_version: bool
    rule: str
    best: str
    table: list[ComparisonRow]
    against_served: dict[str, DifferenceToServed]
    conclusions: list[str]
    settings: dict[str, Any]
    models: dict[str, dict[str, Any]]
    created_at: str


class PromoteBody(Strict):
    reason: str = Field("", max_length=2000,
                        description="Why this version should serve (kept in the audit log)")


# --- health ---------------------------------------------------------------------------------
class Health(BaseModel):
    status: str
    model: str | None = None


class ProblemDoc(BaseModel):
    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None
