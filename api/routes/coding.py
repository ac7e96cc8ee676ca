"""Coding quality: inter-coder reliability, disagreements awaiting adjudication, adjudications."""

from __future__ import annotations

from typing import Annotated, Any

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from forecasting.coding.reliability import BOOTSTRAP_SAMPLES
from forecasting.services import coding as coding_service

from ..auth import current_identity, require
from ..schemas import IsoDate, Ordinal, Strict
from ..services import services
from .common import problems

TAG = Tag(name="coding", description="Coding quality: inter-coder reliability (Krippendorff's "
          "alpha), disagreements between coders, adjudications")
bp = APIBlueprint("coding", __name__, url_prefix="/v1/coding", abp_tags=[TAG])
Code = Annotated[str, Field(min_length=1, max_length=64)]


class ReliabilityQuery(Strict):
    samples: int = Field(BOOTSTRAP_SAMPLES, ge=100, le=5000,
                         description="Bootstrap resamples of the double-coded episodes")


class Reliability(BaseModel):
    model_config = {"extra": "allow"}
    episodes: int
    codings: int
    coders: list[str]
    bootstrap: dict[str, Any]
    thresholds: dict[str, float]
    fields: dict[str, dict[str, Any]]
    pairs: list[dict[str, Any]]
    coverage: dict[str, int]
    floor: dict[str, Any]


class Disagreements(BaseModel):
    total: int
    disagreements: list[dict[str, Any]]


class AdjudicatedValues(Strict):
    """At least one coded field; codes and dates are checked against the codebook."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})
    level: Ordinal | None = None
    severity: Ordinal | None = None
    alignment: Ordinal | None = None
    trigger_type: Code | None = None
    confidence: Code | None = None
    trigger_date: IsoDate | None = None


class AdjudicationBody(Strict):
    trigger_id: Annotated[str, Field(min_length=1, max_length=120)]
    partner: Code
    intel_type: Code
    values: AdjudicatedValues = Field(
        description="The final value of each coded field decided; the others keep the episode's")
    reason: Annotated[str, Field(min_length=1, max_length=4000, pattern=r"\S")] = Field(
        description="Why this is the final value (kept with the adjudication)")


class Adjudication(BaseModel):
    model_config = {"extra": "allow"}
    trigger_id: str
    partner: str
    intel_type: str
    revision: int
    changed: list[str]
    reason: str
    adjudicator: str
    refit: dict[str, Any] | None = None


@bp.get("/reliability", operation_id="getCodingReliability",
        responses={200: Reliability, **problems(400, 429)})
def get_reliability(query: ReliabilityQuery):
    """Krippendorff's alpha per coded field, overall and per coder pair, with bootstrap 95%
    intervals (episodes resampled); coincidence and confusion tables; the floor a refit's
    gate checks (FORECAST_CODING_ALPHA_FLOOR)."""
    s = services()
    return jsonify(coding_service.reliability_report(s.database, s.settings,
                                                     samples=query.samples))


@bp.get("/disagreements", operation_id="listCodingDisagreements",
        responses={200: Disagreements})
def list_disagreements():
    """Episodes whose coders disagree, awaiting adjudication (held back from fits meanwhile)."""
    return jsonify(coding_service.disagreements(services().database))


@bp.post("/adjudications", operation_id="adjudicateEpisode",
         responses={201: Adjudication, **problems(400, 401, 403, 404, 409, 413, 415)})
@require("codings:adjudicate")
def adjudicate(body: AdjudicationBody):
    """Record the final value of a double-coded episode, with a reason (adjudicator or admin):
    written as a revision of the episode, audited; queues a refit."""
    s = services()
    result = coding_service.adjudicate(
        s.database, s.codebook, s.refits, (body.trigger_id, body.partner, body.intel_type),
        body.values.model_dump(exclude_none=True, mode="json"), body.reason, actor=current_identity().name)
    return jsonify(result), 201
