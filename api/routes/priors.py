"""Priors: read the active set, submit a new one (versioned, audited), dry-run a check."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field, create_model

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
    note: str = Field("", max_length=2000, description="Why the change (kept in the audit log)")


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
