"""Horizon forecasts from the current model version: P(at least one restriction within H
months), as JSON and as a plot (forecasting.services.horizons)."""

from __future__ import annotations

import hashlib

from flask import Response, jsonify, request
from flask_openapi3 import APIBlueprint, Tag

from forecasting.services.horizons import arrival_identity, horizon, horizon_plot

from ..responses import cache_control
from ..schemas import HorizonAnswer, HorizonQuery
from ..services import services
from .common import problems

TAG = Tag(name="horizons", description="P(at least one restriction within H months): the "
                                       "restriction model combined with how often triggers "
                                       "arrive and put the partner at stake")
bp = APIBlueprint("horizons", __name__, url_prefix="/v1/forecasts", abp_tags=[TAG])
PNG = {"description": "A PNG image",
       "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}


def _options(query: HorizonQuery) -> dict:
    return {"trigger_type": query.trigger_type, "severity": query.severity,
            "alignment": query.alignment, "months": query.months}


def _conditional(response: Response, version: str, kind: str) -> Response:
    """Cache headers for an answer fixed by the model version *and* the arrival model stored
    with it: the version's content id does not cover the arrival settings, so the ETag names
    the arrival model's id too (two registries may hold one version id with different ones)."""
    s = services()
    arrivals = arrival_identity(s.registry, version)["id"]
    response.headers["Cache-Control"] = cache_control(explicit_version=False,
                                                      open_reads=s.settings.open_reads)
    response.headers["X-Model-Version"] = version
    digest = hashlib.sha256(request.full_path.encode()).hexdigest()[:24]
    response.set_etag(f"{version}-{arrivals}-{kind}-{digest}")
    return response.make_conditional(request)


@bp.get("/horizon", operation_id="getHorizonForecast",
        responses={200: HorizonAnswer, **problems(400, 404, 409, 503)})
def one(query: HorizonQuery):
    """P(at least one restriction of a partner x type within H months, H = 1-36 or `months`),
    with both parts: expected triggers putting the partner at stake, and the probability per
    trigger. 409 for a model version fitted before trigger arrival models existed: refit."""
    s = services()
    engine = s.models.engine()
    answer = horizon(engine, s.registry, query.partner, query.intel_type, **_options(query))
    return _conditional(jsonify(answer), engine.version, "horizon")


@bp.get("/horizon.png", operation_id="getHorizonPlot",
        responses={200: PNG, **problems(400, 404, 409, 503)})
def plot(query: HorizonQuery):
    """The horizon curve as a PNG: P(within H) against H with its 50% and 90% bands."""
    s = services()
    engine = s.models.engine()
    png = horizon_plot(engine, s.registry, query.partner, query.intel_type, **_options(query))
    return _conditional(Response(png, mimetype="image/png"), engine.version, "horizon-png")
