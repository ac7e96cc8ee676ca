"""Priors: read the active set, submit a new one (versioned, audited), dry-run a check."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field, create_model

from forecasting.model.elicitation import MAX_STATEMENTS
from forecasting.model.prior_predictive import STATEMENT_QUANTITIES
from forecasting.model.priors import FAMILIES, PARAMETERS, PriorSet
from forecasting.services.priors import describe_priors, submit_priors

from .. import redact
from ..auth import current_identity, is_anonymous, require
from ..services import services
from .common import problems

TAG = Tag(name="priors",
          description="The prior set of the next fit: read, replace, dry-run check")
bp = APIBlueprint("priors", __name__, url_prefix="/v1/priors", abp_tags=[TAG])
CHECK_DRAWS = 1000


class PriorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dist: str = Field(description="A supported family: " + ", ".join(FAMILIES)
                      + " (a scale needs a positive one; anything else is refused, saying why)")
    kwargs: dict[str, float | list[float]] = Field(default_factory=dict)
    centered: bool | None = None


# One required entry per model parameter: the schema says which keys a prior set needs.
PriorSetDoc = create_model(
    "PriorSetDoc", __config__=ConfigDict(extra="forbid"),
    **{name: (PriorSpec, ...) for name in PARAMETERS})


class PriorsBody(BaseModel):
    priors: PriorSetDoc = Field(
        description="Every model parameter -> {dist, kwargs[, centered]} (pymc-extras Prior shape)")
    note: str = Field("", max_length=2000, description="Why the change: required to replace "
                      "the priors (kept in the history and the audit log); ignored by the check")


class PriorsDoc(BaseModel):
    source: str
    content_hash: str
    priors: dict[str, dict[str, Any]]
    history: list[dict[str, Any]] = []
    refit: dict[str, Any] | None = None


class CheckDoc(BaseModel):
    content_hash: str
    prior_predictive: dict[str, Any]


@bp.get("", operation_id="getPriors", responses={200: PriorsDoc})
def get_priors():
    """The prior set the next fit will use (the newest submitted, else priors/default.toml)."""
    s = services()
    document = describe_priors(s.database, s.settings)
    document["source"] = redact.source_name(document["source"])
    return jsonify(redact.priors(document) if is_anonymous() else document)


@bp.put("", operation_id="replacePriors", responses={200: PriorsDoc, **problems(400, 401, 403, 413, 415)})
@require("priors:write")
def put_priors(body: PriorsBody):
    """Submit a whole new prior set: validated, versioned, audited; used from the next fit."""
    s = services()
    submitted = submit_priors(s.database, s.settings, s.refits,
                              body.priors.model_dump(exclude_none=True), current_identity().name,
                              body.note)
    return jsonify({**submitted.document,
                    "source": redact.source_name(submitted.document["source"])})


@bp.post("/check", operation_id="checkPriors",
         responses={200: CheckDoc, **problems(400, 401, 403, 413, 415, 429)})
@require("priors:write")
def check_priors(body: PriorsBody):
    """Dry run: what these priors imply before any data (prior predictive); nothing is saved.

    Needs a modeler or admin token (as submitting priors does): the heaviest request there is
    (prior predictive draws of every cell), not open to anonymous callers; rate-limited too."""
    from forecasting.model.prior_predictive import prior_predictive

    priors = PriorSet.from_dict(body.priors.model_dump(exclude_none=True))
    summary = prior_predictive(services().codebook, priors, draws=CHECK_DRAWS)
    summary.pop("samples", None)  # raw draws are for plots, not for the wire
    return jsonify(content_hash=priors.content_hash, prior_predictive=summary)


# -- the workbench (issue 21) -----------------------------------------------------------------


class StatementDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="A short name for the statement (errors and reports use it)")
    quantity: str = Field(description="One of " + ", ".join(STATEMENT_QUANTITIES))
    text: str | None = Field(None, description="The judgment in words")
    partner: str | None = None
    bloc: str | None = None
    intel_type: str | None = None
    trigger_type: str | None = None
    severity: int | None = None
    alignment: int | None = None
    interval: list[float] | None = Field(None, description="[a, b]: the quantity lies in it "
                                                          "with `probability`")
    below: float | None = Field(None, description="the quantity lies below it with `probability`")
    above: float | None = Field(None, description="the quantity lies above it with `probability`")
    probability: float = Field(gt=0, lt=1, description="How sure: strictly between 0 and 1")


class StatementsMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = None
    base: str | None = Field(None, description="The prior set to start from: 'default', "
                                               "'active' or a stored set's id")
    tolerance: float | None = Field(None, description="A statement is met when its achieved "
                                                      "probability is within this (0.05)")
    adjust: list[str] | None = Field(None, description="The priors the solver may change "
                                                       "(default: those the statements move)")
    author: str | None = None


class StatementsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    meta: StatementsMeta = Field(default_factory=StatementsMeta)
    statements: list[StatementDoc] = Field(min_length=1, max_length=MAX_STATEMENTS)


class ElicitDoc(BaseModel):
    met: bool
    statements: list[dict[str, Any]]
    conflicts: list[dict[str, Any]]
    content_hash: str
    priors: dict[str, dict[str, Any]]
    prior_file: str
    prior_predictive: dict[str, Any]


class ComparisonDoc(BaseModel):
    a: dict[str, Any] = Field(description="Set A: label, content_hash, prior_set_id, statements")
    b: dict[str, Any]
    same_priors: bool
    parameters: list[dict[str, Any]] = Field(description="Every parameter: its prior in A and "
                                                         "B, changed or not")
    outcome: list[dict[str, Any]] = Field(description="Every prior predictive quantity: "
                                                      "median and 90% interval under A and B")
    draws: int


class HistoryDoc(BaseModel):
    history: list[dict[str, Any]]


class PriorsCompareQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: str = Field(description="'active', 'default' or a stored set's id")
    b: str = Field("active", description="'active', 'default' or a stored set's id")


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=1000)


@bp.post("/elicit", operation_id="elicitPriors",
         responses={200: ElicitDoc, **problems(400, 413, 415, 429)})
def elicit_priors(body: StatementsBody):
    """Dry run: the prior set that meets outcome-scale statements, how well each is met
    (target and achieved probability and quantiles), conflicts named, the prior file to
    save, and its prior predictive; nothing is stored (`PUT /v1/priors` with a note makes it
    active). Open to readers, rate-limited (1-5 s of CPU)."""
    from forecasting.services.workbench import elicit_priors as elicit

    s = services()
    doc = elicit(s.codebook, s.database, s.settings, {
        "meta": body.meta.model_dump(exclude_none=True),
        "statements": [st.model_dump(exclude_none=True) for st in body.statements]},
        files=False)
    doc["base"]["label"] = redact.source_name(doc["base"]["label"])
    return jsonify(doc)


@bp.get("/compare", operation_id="comparePriors", responses={200: ComparisonDoc, **problems(400, 429)})
def compare_priors(query: PriorsCompareQuery):
    """Dry run: two prior sets side by side, the parameter diff and the prior predictive
    of each on the outcome scale (same draws). Candidate fits and their leave-one-trigger-out
    scores take minutes: `forecast priors compare A B --fit` (CLI only)."""
    from forecasting.services.workbench import compare_priors as compare

    s = services()
    doc = compare(s.codebook, s.database, s.settings, query.a, query.b, files=False)
    for side in ("a", "b"):
        doc[side]["label"] = redact.source_name(doc[side]["label"])
    return jsonify(doc)


@bp.get("/compare.png", operation_id="comparePriorsPlot",
        responses={200: {"description": "A PNG image",
                         "content": {"image/png": {"schema": {"type": "string",
                                                              "format": "binary"}}}},
                   **problems(400, 429)})
def compare_priors_plot(query: PriorsCompareQuery):
    """The dry run's plot: both prior sets' prior predictive side by side (median, 50% and
    90% of every quantity) as PNG."""
    import io

    from forecasting.model.prior_predictive import plot_comparison
    from forecasting.services.workbench import compare_priors as compare

    s = services()
    doc = compare(s.codebook, s.database, s.settings, query.a, query.b, files=False,
                  keep_samples=True)
    buffer = io.BytesIO()
    plot_comparison(doc["prior_predictive"]["a"], doc["prior_predictive"]["b"], buffer,
                    labels=(redact.source_name(doc["a"]["label"]),
                            redact.source_name(doc["b"]["label"])))
    return Response(buffer.getvalue(), mimetype="image/png")


@bp.get("/history", operation_id="priorHistory", responses={200: HistoryDoc, **problems(400)})
def prior_history(query: HistoryQuery):
    """Every stored prior set, newest first: who submitted it (hidden from anonymous
    readers), why, the statements behind it, the model versions fitted with it."""
    from forecasting.services.workbench import prior_history as history

    s = services()
    rows = history(s.database, s.registry, limit=query.limit)
    if is_anonymous():
        rows = [redact.without(r, redact.ACTOR_KEYS) for r in rows]
    return jsonify(history=rows)
