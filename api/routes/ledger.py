"""The forecast ledger (issue 19): register a trigger, its frozen forecasts and their scores,
the scorecard and its reliability diagram, corrections, the chain check.

Each view calls one function of forecasting.services.ledger, as `forecast ledger` does.
Anonymous readers see every entry without who wrote it (api/redact).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from forecasting.services import ledger as ledger_service

from .. import redact
from ..auth import current_identity, is_anonymous, require
from ..schemas import IsoDate, Ordinal
from ..services import services
from .common import problems

TAG = Tag(name="ledger", description="The forecast ledger: forecasts frozen before outcomes are "
                                     "known, scored when they are coded; one hash chain")
bp = APIBlueprint("ledger", __name__, url_prefix="/v1/ledger", abp_tags=[TAG])
PNG = {200: {"description": "A PNG image",
             "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}}
Code = Annotated[str, Field(min_length=1, max_length=64)]
TriggerId = Annotated[str, Field(min_length=1, max_length=120)]


class RegistrationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    trigger_id: TriggerId
    partners: list[Code] = Field(min_length=1, max_length=200,
                                 description="Partners at stake (codebook codes)")
    intel_types: list[Code] = Field([], max_length=64,
                                    description="Intelligence types at stake; empty: all")
    trigger_type: Code | None = Field(None, description="Required unless the trigger is coded")
    trigger_date: IsoDate | None = Field(None, description="Required unless the trigger is coded")
    severity: Ordinal | None = Field(None, description="Required unless the trigger is coded")
    alignment: Ordinal | None = Field(None, description="Required unless the trigger is coded")
    description: str = Field("", max_length=4000)
    sources: list[Annotated[str, Field(max_length=500)]] = Field([], max_length=20)


class TriggerPath(BaseModel):
    trigger_id: TriggerId


class EntryPath(BaseModel):
    seq: Annotated[int, Field(ge=1, le=2**31 - 1)]


class CorrectionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=4000, pattern=r"\S", description="Why (recorded)")
    void: bool = Field(False, description="Withdraw a trigger's registration or a forecast "
                                          "from the scorecard (the entries stay)")


class UpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field("", max_length=4000, description="Why the forecasts are updated now "
                                                       "(recorded with each)")


class ListQuery(BaseModel):
    status: Literal["open", "resolved"] | None = None


class Entry(BaseModel):
    """One ledger entry; `hash` chains to `prev_hash`, the previous entry's hash."""

    model_config = ConfigDict(extra="allow")
    seq: int
    kind: Literal["trigger", "forecast", "score", "correction"]
    trigger_id: str
    partner: str | None
    intel_type: str | None
    model_version: str | None
    refers_to: int | None
    recorded_at: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class RegistrationDoc(BaseModel):
    trigger: Entry
    forecasts: list[Entry]


class UpdateDoc(BaseModel):
    trigger_id: str
    forecasts: list[Entry]
    unchanged: list[list[str]]
    resolved: list[list[str]]


class LedgerForecastList(BaseModel):
    model_config = ConfigDict(extra="allow")
    forecasts: list[dict[str, Any]]
    triggers: int
    open: int
    resolved: int


class TriggerDoc(BaseModel):
    trigger_id: str
    entries: list[Entry]
    cells: list[dict[str, Any]]


class ScorecardDoc(BaseModel):
    model_config = ConfigDict(extra="allow")
    overall: dict[str, Any]
    by_version: dict[str, Any]
    by_month: dict[str, Any]
    misses: list[dict[str, Any]]


class VerifyDoc(BaseModel):
    intact: bool
    entries: int
    head: str
    first_broken: dict[str, Any] | None


def _shown(entries: list[dict]) -> list[dict]:
    return [redact.without(e, redact.ACTOR_KEYS) for e in entries] if is_anonymous() else entries


def _engine():
    return services().models.engine()


@bp.post("/triggers", operation_id="registerTrigger",
         responses={201: RegistrationDoc, **problems(400, 401, 403, 404, 409, 413, 415, 503)})
@require("ledger:write")
def register(body: RegistrationBody):
    """Register a trigger (coded, or announced before any outcome) and freeze the current
    forecast of every cell at stake whose outcome is not coded yet. Coder, forecaster or admin."""
    s = services()
    registration = ledger_service.Registration(
        **body.model_dump(exclude={"trigger_date"}),
        trigger_date=body.trigger_date.isoformat() if body.trigger_date else None)
    done = ledger_service.register(s.database, _engine(), s.codebook, registration,
                                   actor=current_identity().name)
    return jsonify(done), 201


@bp.get("/forecasts", operation_id="listLedgerForecasts",
        responses={200: LedgerForecastList, **problems(400)})
def list_forecasts(query: ListQuery):
    """Every registered cell, open or resolved: its latest frozen forecast, outcome, score."""
    return jsonify(ledger_service.list_forecasts(services().database, query.status))


@bp.get("/triggers/<trigger_id>", operation_id="getLedgerTrigger",
        responses={200: TriggerDoc, **problems(404)})
def trigger(path: TriggerPath):
    """A registered trigger's entries, oldest first (scores and corrections included)."""
    shown = ledger_service.show(services().database, path.trigger_id)
    return jsonify({**shown, "entries": _shown(shown["entries"])})


@bp.post("/triggers/<trigger_id>/forecasts", operation_id="updateLedgerTrigger",
         responses={200: UpdateDoc, **problems(400, 401, 403, 404, 409, 413, 415, 503)})
@require("ledger:write")
def update(path: TriggerPath, body: UpdateBody):
    """Forecast the trigger's open cells again (the current version, the reactions coded now)
    and append those that changed; nothing is overwritten."""
    s = services()
    return jsonify(ledger_service.update(s.database, _engine(), s.codebook, path.trigger_id,
                                         actor=current_identity().name, note=body.note))


@bp.post("/entries/<int:seq>/corrections", operation_id="correctLedgerEntry",
         responses={201: Entry, **problems(400, 401, 403, 404, 413, 415)})
@require("ledger:write")
def correct(path: EntryPath, body: CorrectionBody):
    """Append a correction of entry `seq`, with who and why; nothing is edited or deleted."""
    entry = ledger_service.correct(services().database, path.seq, current_identity().name,
                                   body.reason, void=body.void)
    return jsonify(entry), 201


@bp.get("/scorecard", operation_id="getLedgerScorecard", responses={200: ScorecardDoc})
def scorecard():
    """The live record: mean scores per forecaster beside the backtests' baselines, overall, per
    model version and per month, with intervals (bootstrap over triggers), the misses."""
    return jsonify(ledger_service.scorecard(services().database))


@bp.get("/scorecard/reliability.png", operation_id="getLedgerReliability",
        responses={**PNG, **problems(404)})
def reliability():
    """Reliability diagram of the live record's P(any restriction) (404 before any score)."""
    response = Response(ledger_service.reliability_plot(services().database),
                        mimetype="image/png")
    response.headers["Cache-Control"] = "no-cache"  # every coded outcome may change it
    return response


@bp.get("/verify", operation_id="verifyLedger", responses={200: VerifyDoc})
def verify():
    """Recompute the hash chain; `intact` false names the first broken entry."""
    return jsonify(ledger_service.verify(services().database).as_dict())
