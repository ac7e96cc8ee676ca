"""Forecasts from the current model version: one cell (for a new trigger, or live for a coded
one), a batch, the grid, a comparison."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from flask import Response, jsonify, request
from flask_openapi3 import APIBlueprint, Tag

from forecasting.services.forecasts import (
    explained_forecast,
    live_forecast,
    live_grid,
    refuse_scenario,
)
from forecasting.serving import plots

from ..limits import check_cells, unique_codes
from ..problems import Problem
from ..responses import cache_control
from ..schemas import (
    BatchBody,
    CellQuery,
    CompareQuery,
    CompareResponse,
    ForecastAnswer,
    ForecastList,
    GridAnswer,
    GridQuery,
    OneForecastQuery,
)
from ..services import services
from .common import problems, versioned

TAG = Tag(name="forecasts", description="Posterior forecasts from the current model version: "
                                        "one cell, a batch, the grid, two scenarios compared")
bp = APIBlueprint("forecasts", __name__, url_prefix="/v1/forecasts", abp_tags=[TAG])


def _codes(text: str | None, field: str, everything) -> list[str]:
    if text is None:
        return list(everything)
    codes = unique_codes(c.strip() for c in text.split(",") if c.strip())
    if not codes:
        raise Problem(400, "Invalid request", f"{field}: give at least one code")
    return codes


def live(answer: Callable[[], dict], version: str, revision: int,
         render: Callable[[dict], Response] = jsonify) -> Response:
    """A live answer depends on the episodes coded so far, not only on the model version: its
    ETag holds the store's latest revision id too (read before the episodes, so that a tag
    never vouches for episodes newer than it names). A match answers 304 without computing."""
    digest = hashlib.sha256(f"{version}|{revision}|{request.full_path}".encode()
                            ).hexdigest()[:24]
    etag = f"{version}-r{revision}-{digest}"
    headers = {"Cache-Control": cache_control(explicit_version=False,
                                              open_reads=services().settings.open_reads),
               "X-Model-Version": version,
               "X-Store-Revision": str(revision)}
    if etag in request.if_none_match:
        response = Response(status=304, headers=headers)
    else:
        response = render(answer())
        response.headers.update(headers)
    response.set_etag(etag)
    return response


@bp.get("", operation_id="getForecast", responses={200: ForecastAnswer, **problems(400, 404, 409, 503)})
def one(query: OneForecastQuery):
    """P(any restriction) and each level's probability for one partner x type and scenario.

    With `trigger_id`: for that coded trigger, conditioned on its reactions coded so far,
    under the scenario it is coded with; the answer lists the episodes it conditioned on.
    With `explain=true`: also the forecast's terms (`explanation`) and the coded episodes it
    rests on (`evidence`).
    """
    if query.trigger_id is not None:
        refuse_scenario(query.model_fields_set)
    svc = services()
    engine = svc.models.engine()
    if query.explain:  # the evidence is read from the store: tagged with its revision
        return live(lambda: _explained(engine, query, query.evidence_limit), engine.version,
                    svc.database.episodes.latest_revision_id())
    if query.trigger_id is None:
        forecast = engine.forecast(query.partner, query.intel_type, *query.scenario())
        return versioned(forecast, engine.version)
    revision = svc.database.episodes.latest_revision_id()
    return live(lambda: live_forecast(engine, svc.database, svc.codebook, query.partner,
                                      query.intel_type, query.trigger_id),
                engine.version, revision)


def _explained(engine, query, limit: int) -> dict:
    svc = services()
    scenario = None
    if query.trigger_id is None:
        scenario = dict(zip(("trigger_type", "severity", "alignment"), query.scenario(),
                            strict=True))
    return explained_forecast(engine, svc.database, svc.codebook, query.partner,
                              query.intel_type, scenario, query.trigger_id, limit)


@bp.get("/explain.png", operation_id="getForecastExplanationPlot",
        responses={200: {"description": "A PNG image: a waterfall of the forecast's terms",
                         "content": {"image/png": {"schema": {"type": "string",
                                                              "format": "binary"}}}},
                   **problems(400, 404, 409, 503)})
def explain_plot(query: CellQuery):
    """A waterfall of the forecast's terms on the log-odds scale, as PNG (the cell and scenario,
    or trigger_id, as GET /v1/forecasts takes them)."""
    if query.trigger_id is not None:
        refuse_scenario(query.model_fields_set)
    svc = services()
    engine = svc.models.engine()
    return live(lambda: _explained(engine, query, 0), engine.version,
                svc.database.episodes.latest_revision_id(),
                render=lambda answer: Response(plots.explanation_waterfall(answer),
                                               mimetype="image/png"))


@bp.post("/batch", operation_id="forecastBatch",
         responses={200: ForecastList, **problems(400, 404, 413, 415, 429, 503)})
def batch(body: BatchBody):
    """Many cells in one request; every query is validated before any is answered."""
    check_cells(len(body.queries), "queries")
    engine = services().models.engine()
    forecasts = engine.batch([q.model_dump() for q in body.queries])
    return versioned({"model": engine.model_info, "count": len(forecasts),
                      "forecasts": forecasts}, engine.version)


@bp.get("/grid", operation_id="getForecastGrid",
         responses={200: GridAnswer, **problems(400, 404, 409, 429, 503)})
def grid(query: GridQuery):
    """Every partner x type under one scenario, highest risk first (or sorted by code).

    With `trigger_id`: every cell after that coded trigger, each conditioned on its reactions
    coded so far as `GET /v1/forecasts?...&trigger_id=` answers it, under the scenario the
    trigger is coded with; the answer lists the episodes conditioned on and each cell's own
    coded level.
    """
    if query.trigger_id is not None:
        refuse_scenario(query.model_fields_set)
    svc = services()
    engine = svc.models.engine()
    check_cells(len(engine.partners) * len(engine.intel_types), "grid")
    if query.trigger_id is not None:
        revision = svc.database.episodes.latest_revision_id()
        return live(lambda: live_grid(engine, svc.database, svc.codebook, query.trigger_id,
                                      sort=query.sort, limit=query.limit, revision=revision),
                    engine.version, revision)
    scenario = dict(zip(("trigger_type", "severity", "alignment"), query.scenario(),
                        strict=True))
    forecasts = engine.grid(scenario, sort=query.sort)
    if query.limit is not None:
        forecasts = forecasts[:query.limit]
    return versioned({"model": engine.model_info, "scenario": scenario, "count": len(forecasts),
                      "forecasts": forecasts}, engine.version)


@bp.get("/compare", operation_id="compareScenarios",
         responses={200: CompareResponse, **problems(400, 404, 429, 503)})
def compare(query: CompareQuery):
    """Two scenarios for the same cells, and the difference b - a with its own interval."""
    engine = services().models.engine()
    partners = _codes(query.partner, "partner", engine.partners)
    types = _codes(query.intel_type, "intel_type", engine.intel_types)
    check_cells(len(partners) * len(types), "partner x intel_type")
    a = {"trigger_type": query.trigger_type_a, "severity": query.severity_a,
         "alignment": query.alignment_a}
    b = {"trigger_type": query.trigger_type_b, "severity": query.severity_b,
         "alignment": query.alignment_b}
    comparisons = engine.compare(partners, types, a, b)
    return versioned({"model": engine.model_info, "scenario_a": a, "scenario_b": b,
                      "comparisons": comparisons}, engine.version)
