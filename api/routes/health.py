"""Liveness, readiness and the vocabulary."""

from __future__ import annotations

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag

from ..problems import Problem
from ..schemas import Health, Vocab
from ..services import services
from .common import problems

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="service")])


@bp.get("/health", responses={200: Health})
def health():
    """The process is up."""
    return jsonify(status="ok")


@bp.get("/ready", responses={200: Health, **problems(503)})
def ready():
    """Ready only when a current model version is loaded and answering."""
    try:
        engine = services().models.engine()
    except Exception as exc:  # any failure to load means: not ready
        raise Problem(503, "Not ready", str(exc)) from None
    return jsonify(status="ready", model=engine.version)


@bp.get("/v1/vocab", responses={200: Vocab})
def vocab():
    """Partners (with bloc), blocs, intelligence types, trigger types, levels, scales."""
    return jsonify(services().codebook.as_dict())
