"""Liveness, readiness and the vocabulary."""

from __future__ import annotations

import logging

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy import select

from forecasting.store.schema import episodes

from ..problems import Problem
from ..schemas import Health, Vocab
from ..services import services
from .common import problems

TAG = Tag(name="service",
          description="Liveness, readiness and the codebook vocabulary")
bp = APIBlueprint("health", __name__, abp_tags=[TAG])
log = logging.getLogger(__name__)


@bp.get("/health", operation_id="getHealth", responses={200: Health})
def health():
    """The process is up."""
    return jsonify(status="ok")


@bp.get("/ready", operation_id="getReadiness", responses={200: Health, **problems(503)})
def ready():
    """Ready only when the database answers and a current model version is loaded.

    The reason says which of the two is missing, never how (the log has the exception)."""
    s = services()
    try:
        with s.database.engine.connect() as conn:  # a table, not only SELECT 1: an empty
            conn.execute(select(1).select_from(episodes).limit(1)).all()  # file is not ready
    except Exception:
        log.exception("not ready: the database does not answer")
        raise Problem(503, "Not ready", "the database does not answer") from None
    try:
        engine = s.models.engine()
    except Exception as exc:  # any failure to load means: not ready
        log.warning("not ready: no current model version loads: %s", exc)
        raise Problem(503, "Not ready", "no current model version is loaded") from None
    return jsonify(status="ready", model=engine.version)


@bp.get("/v1/vocab", operation_id="getVocabulary", responses={200: Vocab})
def vocab():
    """Partners (with bloc), blocs, intelligence types, trigger types, levels, scales."""
    return jsonify(services().codebook.as_dict())
