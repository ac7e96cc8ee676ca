"""Evaluation of a model version: backtest / SBC / sensitivity report, plots, sensitivity table.

Results are computed by `forecast backtest` and `forecast sbc` (minutes of sampling, never in
a request) and stored under the instance's evaluation folder; the sensitivity table of a
version is computed on first request (seconds) and cached there.
"""

from __future__ import annotations

import threading

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag

from forecasting.evaluation import reports

from ..problems import Problem
from ..schemas import EvaluationDoc, PlotPath, SensitivityDoc, VersionPath
from ..services import services
from .common import problems

TAG = Tag(name="evaluation",
          description="Stored backtest, SBC and sensitivity results of a model version")
bp = APIBlueprint("evaluation", __name__, url_prefix="/v1/models", abp_tags=[TAG])
_SENSITIVITY_LOCK = threading.Lock()  # one computation at a time; the result is cached on disk
PNG = {200: {"description": "A PNG image",
             "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}}


@bp.get("/<version>/evaluation", operation_id="getEvaluation",
         responses={200: EvaluationDoc, **problems(404, 503)})
def evaluation(path: VersionPath):
    """Stored backtest (scores beside baselines, calibration), SBC and sensitivity results."""
    mv = services().registry.get(path.version)
    found = reports.load_results(services().settings, mv.version)
    response = jsonify(version=mv.version, **found,
                       plots=[name for name in reports.PLOTS
                              if (reports.evaluation_dir(services().settings, mv.version)
                                  / f"{name}.png").is_file()])
    response.headers["X-Model-Version"] = mv.version
    return response


@bp.get("/<version>/evaluation/plots/<name>.png", operation_id="getEvaluationPlot",
         responses={**PNG, **problems(404, 503)})
def evaluation_plot(path: PlotPath):
    """reliability (P(any restriction) of held-out episodes), scores (model - baselines), pit,
    sbc (rank histograms)."""
    if path.name not in reports.PLOTS:
        raise Problem(404, "Unknown plot",
                      f"name: unknown plot {path.name!r}; use one of {list(reports.PLOTS)}")
    mv = services().registry.get(path.version)
    png = reports.load_plot(services().settings, mv.version, path.name)
    response = Response(png, mimetype="image/png")
    response.headers["Cache-Control"] = "no-cache"  # a rerun of the backtest replaces it
    response.headers["X-Model-Version"] = mv.version
    return response


@bp.get("/<version>/sensitivity", operation_id="getSensitivity",
         responses={200: SensitivityDoc, **problems(404, 409, 503)})
def sensitivity(path: VersionPath):
    """Power-scaling prior/likelihood sensitivity per parameter group and headline forecast,
    with prior-data conflict flags (computed on first request, then cached)."""
    mv = services().registry.get(path.version)
    try:
        with _SENSITIVITY_LOCK:
            report = reports.sensitivity_report(services().settings, services().registry,
                                                mv.version)
    except reports.SensitivityUnavailableError as exc:  # 409 (services.errors), naming the version
        raise reports.SensitivityUnavailableError(f"model version {mv.version}: {exc}") from None
    response = jsonify(report)
    response.headers["X-Model-Version"] = mv.version
    return response
