"""Model versions: list, read, diagnostics, plots, promotion (rollback), the stored
leave-one-trigger-out comparison."""

from __future__ import annotations

from flask import Response, jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import ValidationError

from forecasting.evaluation import reports
from forecasting.services import models as model_service
from forecasting.serving import plots

from ..auth import current_identity, require
from ..openapi import REF
from ..problems import Problem, validation_error_response
from ..responses import cache_control
from ..schemas import (
    Diagnostics,
    ModelDetail,
    ModelList,
    ModelSummary,
    PlotPath,
    PromoteBody,  # validated by hand (the body is optional), documented as a component
    TriggerComparison,
    VersionPath,
)
from ..services import services
from .common import problems

TAG = Tag(name="models",
          description="Fitted model versions: metadata, diagnostics, plots, promotion (and rollback)")
bp = APIBlueprint("models", __name__, url_prefix="/v1/models", abp_tags=[TAG])


_PROMOTE_BODY = {"requestBody": {"required": False, "content": {
    "application/json": {"schema": {"$ref": REF.format(model="PromoteBody")}}}}}


@bp.get("", operation_id="listModels", responses={200: ModelList})
def list_models():
    """Every stored version, newest first, with its verdict; which one is current."""
    current = services().models.current_version()
    return jsonify(current=current,
                   models=[model_service.model_summary(mv, current) for mv in services().registry.versions()])


@bp.get("/<version>", operation_id="getModel", responses={200: ModelDetail, **problems(404, 503)})
def get_model(path: VersionPath):
    """One version's full metadata (`current` is an alias)."""
    mv = services().registry.get(path.version)
    return jsonify({**model_service.model_summary(mv, services().models.current_version()),
                    "metadata": mv.metadata})


@bp.get("/<version>/diagnostics", operation_id="getDiagnostics",
         responses={200: Diagnostics, **problems(404, 503)})
def diagnostics(path: VersionPath):
    """R-hat, ESS, MCSE, divergences, tree depth, E-BFMI, PSIS-LOO, predictive checks, verdict."""
    mv = services().registry.get(path.version)
    return jsonify(version=mv.version, verdict=mv.verdict, reasons=mv.reasons,
                   diagnostics=mv.metadata.get("diagnostics", {}))


@bp.get("/<version>/comparison", operation_id="getModelComparison",
         responses={200: TriggerComparison, **problems(404, 503)})
def comparison(path: VersionPath):
    """Leave-one-trigger-out comparison of the version's model with simpler variants, as
    `forecast models compare` stored it (404 until it has been computed: minutes of fits)."""
    mv = services().registry.get(path.version)
    response = jsonify(reports.load_comparison(services().settings, mv.version))
    response.headers["X-Model-Version"] = mv.version
    return response


@bp.get("/<version>/plots/<name>.png", operation_id="getDiagnosticPlot",
        responses={200: {"description": "A PNG image",
                         "content": {"image/png": {"schema": {"type": "string",
                                                              "format": "binary"}}}},
                   **problems(404, 503)})
def plot(path: PlotPath):
    """A diagnostic plot as PNG (trace, rank, forest, energy, ppc, prior_posterior, ...)."""
    if path.name not in plots.PLOTS:
        raise Problem(404, "Unknown plot",
                      f"name: unknown plot {path.name!r}; use one of {sorted(plots.PLOTS)}")
    s = services()
    mv = s.registry.get(path.version)
    try:
        png = s.plots.get(mv, path.name)
    except plots.PlotUnavailableError:  # e.g. a lean version stored without the group it needs
        raise Problem(404, "Plot unavailable",
                      f"name: model version {mv.version} has no data for the plot "
                      f"{path.name!r}") from None
    response = Response(png, mimetype="image/png")
    # `current` moves at each promotion: revalidate it; an explicit id never changes
    response.headers["Cache-Control"] = cache_control(
        explicit_version=path.version == mv.version, open_reads=s.settings.open_reads)
    response.headers["X-Model-Version"] = mv.version
    response.set_etag(f"{mv.version}-{path.name}")
    return response.make_conditional(request)


@bp.post("/<version>/promote", operation_id="promoteModel",
         responses={200: ModelSummary, **problems(400, 401, 403, 404, 409, 413, 415)},
         openapi_extensions=_PROMOTE_BODY)
@require("models:promote")
def promote(path: VersionPath):
    """Make a passing version current (also a rollback); optional body `{"reason": "..."}`
    for the audit log. Needs a modeler or admin token."""
    payload = request.get_json(silent=True)
    try:
        body = PromoteBody.model_validate({} if payload is None else payload)
    except ValidationError as exc:
        return validation_error_response(exc)
    s = services()
    mv = model_service.promote(s.settings, s.registry, s.database, path.version,
                               current_identity().name, body.reason)
    return jsonify(model_service.model_summary(mv, mv.version))
