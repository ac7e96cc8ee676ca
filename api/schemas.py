"""Request and response schemas: they validate requests and generate /openapi.json."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel

from forecasting.serving.forecasts import Scenario


def _not_a_boolean(value: Any) -> Any:
    # pydantic reads true/false as 1/0: a step of a scale is a number, never a flag
    if isinstance(value, bool):
        raise ValueError("must be a whole number 0-3, not true or false")
    return value


def _iso_date(value: Any) -> Any:
    # pydantic reads numbers (and numeric text) as Unix times: 0 would be 1970-01-01
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or len(value) != 10 or value[4] != "-" or value[7] != "-":
        raise ValueError("must be a date written YYYY-MM-DD")
    return value


Ordinal = Annotated[int, Field(ge=0, le=3), BeforeValidator(_not_a_boolean)]
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
# A code of a codebook vocabulary: the served document refers each such field to the
# vocabulary's shared component (api/openapi.py), whose enum the codebook fills in. The mark
# rides in `format`, the one free-text keyword flask-openapi3 keeps, and is removed there.
VOCABULARY = "vocabulary:"


def code_list(name: str, **kwargs) -> Any:
    """A Field of comma-separated codes of the vocabulary `name`: the document gives it the
    pattern of such a list."""
    return Field(json_schema_extra={"format": f"{VOCABULARY}{name},"}, **kwargs)


def vocabulary(name: str, **kwargs) -> Any:
    """A Field whose schema the document replaces by the shared component of `name`."""
    return Field(json_schema_extra={"format": f"{VOCABULARY}{name}"}, **kwargs)


class Verdict(StrEnum):
    """The diagnostic gate's verdict on a fit."""

    PASS = "pass"
    FAIL = "fail"


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


class LiveScenarioQuery(ScenarioQuery):
    """A scenario for a new trigger, or a coded trigger (`trigger_id`) whose coding fixes it."""

    # No scenario defaults in the document: a generated client sends every default it is
    # told of, and a scenario sent with trigger_id is refused. Without trigger_id the
    # engine's defaults apply (scenario()).
    trigger_type: Code | None = Field(
        None, description=f"Trigger type code (default {Scenario.trigger_type}; none with "
                          "trigger_id)")
    severity: Ordinal | None = Field(
        None, description=f"Trigger severity 0-3 (default {Scenario.severity}; none with "
                          "trigger_id)")
    alignment: Ordinal | None = Field(
        None, description="Perceived US alignment with the adversary 0-3 (default "
                          f"{Scenario.alignment}; none with trigger_id)")
    trigger_id: TriggerId | None = Field(
        None, description="A coded trigger: the forecast conditions on its reactions coded so "
                          "far, under the scenario the trigger is coded with (give no "
                          "trigger_type, severity or alignment with it)")

    def scenario(self) -> tuple[str, int, int]:
        """trigger_type, severity, alignment: as given, else the engine's defaults."""
        return (Scenario.trigger_type if self.trigger_type is None else self.trigger_type,
                Scenario.severity if self.severity is None else self.severity,
                Scenario.alignment if self.alignment is None else self.alignment)


class CellQuery(LiveScenarioQuery, ForecastQuery):
    """One cell, for a new trigger or live after a coded one (`trigger_id`)."""


class OneForecastQuery(CellQuery):
    explain: bool = Field(
        False, description="Add the forecast's `explanation` (its linear predictor term by "
                           "term, each with what it moves P(any restriction) by) and its "
                           "`evidence` (the coded episodes it rests on)")
    evidence_limit: Annotated[int, Field(ge=0, le=100)] = Field(
        10, description="With explain: at most this many episodes of each kind of evidence "
                        "(the counts are always complete)")


class GridQuery(LiveScenarioQuery):
    sort: Literal["risk", "partner", "intel_type"] = "risk"
    limit: Annotated[int, Field(ge=1, le=10_000)] | None = None


class CompareQuery(Strict):
    partner: str | None = code_list("partner", default=None,
                                    description="Comma-separated partner codes (default: all)")
    intel_type: str | None = code_list("intel_type", default=None,
                                       description="Comma-separated types (default: all)")
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
    verdict: Verdict
    draws_used: int | None = Field(
        None, description="Present when the fit had more posterior draws than "
                          "FORECAST_LIMIT_MAX_DRAWS: the draws the answer was computed from "
                          "(thinned evenly within each chain)")


SUMMARY_EXAMPLE = {"mean": 0.31, "median": 0.3, "ci50": [0.22, 0.39], "ci90": [0.12, 0.53]}
FORECAST_EXAMPLE = {
    "partner": "ISR", "intel_type": "humint",
    "scenario": {"trigger_type": "disclosure_incident", "severity": 2, "alignment": 1},
    "any_restriction": SUMMARY_EXAMPLE,
    "levels": {"0": {"mean": 0.69, "median": 0.7, "ci50": [0.61, 0.78], "ci90": [0.47, 0.88]},
               "1": {"mean": 0.17, "median": 0.16, "ci50": [0.11, 0.22], "ci90": [0.05, 0.32]},
               "2": {"mean": 0.1, "median": 0.09, "ci50": [0.06, 0.13], "ci90": [0.02, 0.21]},
               "3": {"mean": 0.04, "median": 0.03, "ci50": [0.02, 0.05], "ci90": [0.01, 0.1]}},
    "model": {"version": "20261101T120000Z-3f2a9c1e", "fitted_at": "2026-11-01T12:00:00+00:00",
              "episodes": 412, "verdict": "pass"}}


class LevelSummaries(RootModel[dict[Literal["0", "1", "2", "3"], Summary]]):
    """Each restriction level's probability ("0" none ... "3" suspended)."""


class Forecast(BaseModel):
    partner: str
    intel_type: str
    scenario: ScenarioDoc
    any_restriction: Summary
    levels: LevelSummaries
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


# --- explanations and evidence (issue 17: forecasting.serving.explain, .evidence) ------------
class ExplainedTerm(BaseModel):
    """One term of the forecast's linear predictor."""

    term: Literal["bloc", "partner", "intel_type", "bloc_type", "partner_type", "trigger_type",
                  "severity", "alignment", "event", "reaction"]
    label: str
    kind: Literal["cell", "scenario", "cluster"]
    log_odds: Summary = Field(description="The term's value in the linear predictor, per "
                                          "posterior draw (a cluster term: its effective value)")
    any_restriction_shift: Summary = Field(
        description="P(any restriction) minus P(any restriction) with this term at its "
                    "population value, per draw")
    population_value: float = Field(description="The value the shift is measured against (0)")
    scale: Summary | None = Field(None, description="A cluster term's sd in the model")
    treatment: Literal["integrated out", "conditioned on"] | None = None
    note: str | None = Field(None, description="e.g. a partner term drawn from its bloc")


class ExplanationCheck(BaseModel):
    terms_sum_to: str
    max_abs_difference: float = Field(
        description="Largest |sum of the eight model terms - linear predictor| over the draws")
    max_abs_difference_effective: float = Field(
        description="Largest |sum of all ten terms - effective linear predictor| over the draws")
    any_restriction: str


class Explanation(BaseModel):
    """The forecast's linear predictor, term by term, on the log-odds scale."""

    scale: Literal["log-odds"]
    draws: int
    linear_predictor: Summary = Field(description="eta: the eight model terms' sum")
    effective_linear_predictor: Summary = Field(
        description="eta plus the cluster terms: P(any restriction) = sigmoid(this - cutpoint)")
    cutpoint: Summary = Field(description="The 0|1 cutpoint")
    any_restriction: Summary = Field(description="The served P(any restriction)")
    terms: list[ExplainedTerm]
    check: ExplanationCheck


class CodedEpisode(BaseModel):
    """The coded fields of an episode as answers show them (sources as a list)."""

    trigger_id: str
    trigger_type: str
    trigger_date: str
    severity: int
    alignment: int
    partner: str
    intel_type: str
    level: int
    sources: list[str]
    confidence: str


class EvidenceEpisode(CodedEpisode):
    relation: Literal["same partner and type", "same partner, other types",
                      "same bloc and type, other partners"]


class EvidenceCounts(BaseModel):
    same_partner_and_type: int
    same_partner_other_types: int
    same_bloc_and_type: int


class EvidenceStore(BaseModel):
    revision: int = Field(description="The store revision the episodes are read as of")
    as_fitted: bool = Field(description="True: as the served version's fit read them")
    current_revision: int | None = None
    changed_since: int | None = Field(
        None, description="Episodes of these partners coded or revised since the fit")
    note: str


class Evidence(BaseModel):
    """The coded episodes a forecast rests on, closest first."""

    direct: bool = Field(description="False: no episode of this partner x type is coded")
    note: str
    counts: EvidenceCounts
    restricted: EvidenceCounts = Field(description="Of those, episodes with level >= 1")
    limit: int
    episodes: list[EvidenceEpisode]
    store: EvidenceStore


class ExplainedForecast(Forecast):
    explanation: Explanation
    evidence: Evidence


class ExplainedLiveForecast(LiveForecast):
    explanation: Explanation
    evidence: Evidence


class ForecastAnswer(RootModel[ExplainedLiveForecast | ExplainedForecast | LiveForecast
                               | Forecast]):
    """A forecast; with trigger_id, a live forecast (conditioned on the coded reactions); with
    explain, its explanation and evidence too."""


class BatchBody(Strict):
    queries: Annotated[list[ForecastQuery], Field(min_length=1, max_length=1000)]


class ForecastList(BaseModel):
    model: ModelStamp
    count: int
    forecasts: list[Forecast]


class GridResponse(ForecastList):
    scenario: ScenarioDoc


class LiveGridCell(Forecast):
    observed_level: int | None = Field(
        description="The cell's own coded level after this trigger (left out of its "
                    "conditioning), if coded")


class LiveGridResponse(BaseModel):
    """Every cell after a coded trigger, each as GET /v1/forecasts?trigger_id= answers it."""

    model: ModelStamp
    trigger_id: str
    scenario: ScenarioDoc = Field(description="The scenario the trigger is coded with")
    conditioned_on: list[ConditionedEpisode] = Field(
        description="The trigger's coded episodes: each cell conditions on all of them but "
                    "its own")
    not_conditioned_on: list[ConditionedEpisode] | None = Field(
        None, description="Coded episodes of partners or types the model version predates: "
                          "listed, not used; refit to use them")
    draws_used: int = Field(description="Posterior draws the conditioning was computed from")
    store_revision: int = Field(description="The episode store's revision the answer reads "
                                            "(also in the X-Store-Revision header)")
    count: int
    forecasts: list[LiveGridCell]


class GridAnswer(RootModel[LiveGridResponse | GridResponse]):
    """The grid for a new trigger under a scenario; with trigger_id, live after that coded
    trigger (conditioned on its reactions coded so far)."""


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
class BlocEntry(BaseModel):
    code: str = vocabulary("bloc")
    name: str


class PartnerEntry(BaseModel):
    code: str = vocabulary("partner")
    name: str
    bloc: str = vocabulary("bloc")


class IntelTypeEntry(BaseModel):
    code: str = vocabulary("intel_type")
    name: str


class TriggerTypeEntry(BaseModel):
    code: str = vocabulary("trigger_type")
    name: str


class LevelEntry(BaseModel):
    code: int = vocabulary("level")
    name: str
    definition: str


class ScaleEntry(BaseModel):
    """A step of an anchored 0-3 scale (severity, alignment)."""

    code: int
    name: str
    definition: str


class ConfidenceEntry(BaseModel):
    code: str = vocabulary("confidence")
    definition: str


class Vocab(BaseModel):
    version: str
    blocs: list[BlocEntry]
    partners: list[PartnerEntry]
    intel_types: list[IntelTypeEntry]
    trigger_types: list[TriggerTypeEntry]
    levels: list[LevelEntry]
    severity: list[ScaleEntry]
    alignment: list[ScaleEntry]
    confidence: list[ConfidenceEntry]


# --- episodes -------------------------------------------------------------------------------
EPISODE_EXAMPLE = {
    "trigger_id": "2017-oval-office-disclosure", "trigger_type": "disclosure_incident",
    "trigger_date": "2017-05-15", "severity": 3, "alignment": 1, "partner": "ISR",
    "intel_type": "humint", "level": 1,
    "sources": ["The Washington Post, 2017-05-15", "The New York Times, 2017-05-16"],
    "coder": "analyst-1", "confidence": "medium",
    "trigger_description": "Classified partner material disclosed to Russian officials",
    "coded_at": "2026-11-01", "notes": ""}


class EpisodeQuery(Strict):
    partner: Code | None = None
    intel_type: Code | None = None
    trigger_type: Code | None = None
    trigger_id: Annotated[str, Field(max_length=120)] | None = None
    level: Ordinal | None = None
    since: IsoDate | None = None
    until: IsoDate | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    offset: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class EpisodeKey(BaseModel):
    trigger_id: Annotated[str, Field(min_length=1, max_length=120)]
    partner: Code
    intel_type: Code


class EpisodeRecord(CodedEpisode):
    model_config = ConfigDict(extra="allow")
    id: int
    coder: str
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
    codings: int = 0  # other coders' codings of existing episodes, new or changed (issue 20)
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
    verdict: Verdict
    reasons: list[str]
    current: bool


class ModelList(BaseModel):
    current: str | None
    models: list[ModelSummary]


class ModelDetail(ModelSummary):
    metadata: dict[str, Any]


class Diagnostics(BaseModel):
    version: str
    verdict: Verdict
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


class EvaluationDoc(BaseModel):
    """A version's stored evaluation results: each kind present once computed."""

    model_config = ConfigDict(extra="allow")
    version: str
    plots: list[str] = Field(description="Evaluation plots stored for the version")
    backtest: dict[str, Any] | None = Field(None, description="`forecast backtest`'s report")
    sbc: dict[str, Any] | None = Field(None, description="`forecast sbc`'s report")
    sensitivity: dict[str, Any] | None = Field(None, description="`forecast sensitivity`'s report")
    comparison: dict[str, Any] | None = Field(None, description="`forecast models compare`'s "
                                                                 "report")


class SensitivityDoc(BaseModel):
    """Power-scaling sensitivity per parameter group and headline forecast."""

    model_config = ConfigDict(extra="allow")
    version: str
    priors_hash: str | None
    created_at: str


class PromoteBody(Strict):
    reason: str = Field("", max_length=2000,
                        description="Why this version should serve (kept in the audit log)")


# --- health ---------------------------------------------------------------------------------
class Health(BaseModel):
    status: str
    model: str | None = None


class FieldError(BaseModel):
    """One input a problem is about, to show beside it."""

    field: str = Field(description="The field, dotted for nested ones (`queries.0.partner`, "
                                    "`sigma_bloc.kwargs.sigma`)")
    message: str
    line: int | None = Field(None, description="The row of a batch (1-based), when in one")
    allowed: list[str | int] | None = Field(None, description="The codes allowed here, when the "
                                                              "value is an unknown code")


class ProblemDoc(BaseModel):
    """An RFC 9457 problem document: every answer with a 4xx or 5xx status."""

    model_config = ConfigDict(title="Problem")
    type: str = Field(description="Always about:blank: the status and title say what happened")
    title: str
    status: int
    detail: str = Field("", description="What went wrong and what to do; absent when the title "
                                        "says it all")
    errors: list[FieldError] = Field([], description="The fields at fault, when known")
    errors_omitted: int = Field(0, description="Field errors left out of `errors` (too many)")


# Examples of the main bodies, by component name (api/openapi.py sets them: flask-openapi3
# keeps no `examples` of a model's own schema).
EXAMPLES = {
    "Forecast": [FORECAST_EXAMPLE],
    "BatchBody": [{"queries": [
        {"partner": "ISR", "intel_type": "humint"},
        {"partner": "GBR", "intel_type": "sigint", "trigger_type": "legal_case", "severity": 1,
         "alignment": 0}]}],
    "Episode": [EPISODE_EXAMPLE],
    "ImportResult": [{"inserted": 1, "revised": 0, "unchanged": 0, "codings": 0, "audit_id": 57,
                      "refit": {"id": 12, "status": "queued", "reason": "episodes"}}],
    "PromoteBody": [{"reason": "rollback: the new fit's forecasts for ISR moved without new "
                               "episodes"}],
    "Problem": [{"type": "about:blank", "title": "Unknown code", "status": 400,
                 "detail": "partner: unknown code 'XXX'; allowed: GBR, CAN, ...",
                 "errors": [{"field": "partner", "message": "unknown code 'XXX'",
                             "allowed": ["GBR", "CAN"]}]}],
}


# --- horizon forecasts (issue 17: forecasting.serving.horizons) --------------------------------
class HorizonQuery(Strict):
    partner: Code = Field(description="Partner code, e.g. ISR")
    intel_type: Code = Field(description="Intelligence type code, e.g. humint")
    trigger_type: Code | None = Field(
        None, description="Count only triggers of this type (default: every type, at its "
                          "coded rate)")
    severity: Ordinal | None = Field(
        None, description="Count only triggers of this severity 0-3 (default: every "
                          "severity, at its coded share)")
    alignment: Ordinal | None = Field(
        None, description="Perceived US alignment with the adversary 0-3 assumed for every "
                          "trigger (default: mixed over the coded triggers' alignments)")
    months: Annotated[int, Field(ge=1, le=36)] | None = Field(
        None, description="One horizon in months (default: the curve for 1-36)")


class HorizonScenario(BaseModel):
    """What the caller restricted the triggers to; null: mixed over the coded shares."""

    trigger_type: str | None
    severity: int | None
    alignment: int | None


class HorizonPoint(BaseModel):
    months: int
    any_restriction: Summary = Field(description="P(at least one restriction within `months`)")
    expected_triggers: Summary = Field(
        description="Expected triggers putting the partner at stake within `months`")


class PerTrigger(BaseModel):
    any_restriction: Summary = Field(
        description="P(any restriction) after one trigger putting the partner at stake, mixed "
                    "over the trigger types and severities it may be")


class TriggerTypeArrivals(BaseModel):
    at_stake_per_month: Summary = Field(
        description="Triggers of this type putting this partner at stake per month")
    exposure: Summary = Field(
        description="P(a trigger of this type puts this partner at stake): pooled toward "
                    "the partner's exposure to every type (the same for every type from a "
                    "version with one exposure per partner, `model.arrival_model.exposure`)")
    any_restriction: Summary = Field(
        description="P(any restriction) after one trigger of this type putting the partner "
                    "at stake")


class ArrivalWindow(BaseModel):
    start: str | None
    end: str | None
    coded_triggers: int


class Arrivals(BaseModel):
    triggers_per_month: Summary = Field(description="Triggers arriving per month (any partner)")
    exposure: Summary = Field(
        description="P(a trigger puts this partner at stake), over the triggers counted: "
                    "the exposures of their types mixed at the types' rates")
    at_stake_per_month: Summary = Field(
        description="Triggers putting this partner at stake per month")
    by_trigger_type: dict[str, TriggerTypeArrivals]
    window: ArrivalWindow
    half_life_years: float | None = Field(
        description="Half-life of the weights of past triggers (null: equal weights)")
    not_forecast: list[str] | None = Field(
        None, description="Trigger types the restriction model has no effect for (left out)")


class ArrivalModelStamp(BaseModel):
    """The trigger arrival model stored with the version, which the answer also rests on."""

    id: str = Field(description="Its content id (12 hex digits) from its settings and the "
                                "triggers it was fitted on: the version's id does not cover "
                                "them, so two answers of one version may differ here (the "
                                "ETag names it too)")
    half_life_years: float | None = Field(
        description="Half-life of the weights of past triggers (null: equal weights)")
    exposure: Literal["partner x trigger type, pooled toward the partner's",
                      "partner, pooled within bloc"] = Field(
        description="How the exposure is pooled: by trigger type (every version fitted since "
                    "the exposure by type) or one per partner (earlier versions)")


class HorizonModelStamp(ModelStamp):
    arrival_model: ArrivalModelStamp


class HorizonAnswer(BaseModel):
    partner: str
    intel_type: str
    scenario: HorizonScenario
    curve: list[HorizonPoint]
    per_trigger: PerTrigger
    arrivals: Arrivals
    model: HorizonModelStamp
