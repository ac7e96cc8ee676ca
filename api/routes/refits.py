"""Refits: status (current version, staleness, queue), history, and a refit by hand."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from forecasting.refits import model_status

from .. import redact
from ..auth import current_identity, is_anonymous, require
from ..problems import Problem
from ..services import services
from .common import problems

TAG = Tag(name="refits",
          description="Refit status (staleness, queue, history) and refits by hand")
bp = APIBlueprint("refits", __name__, url_prefix="/v1/refits", abp_tags=[TAG])


class RefitsQuery(BaseModel):
    limit: int = Field(50, ge=1, le=500)


class JobPath(BaseModel):
    job_id: int = Field(ge=1, le=2**31 - 1)


class RefitStatus(BaseModel):
    current_version: str | None
    current_fitted_at: str | None
    stale: bool
    stale_since: str | None
    stale_reasons: list[str]
    queued: list[dict[str, Any]]
    running: list[dict[str, Any]]
    history: list[dict[str, Any]]


class Job(BaseModel):
    model_config = {"extra": "allow"}
    id: int
    status: str
    reason: str


@bp.get("", operation_id="getRefitStatus", responses={200: RefitStatus})
def status(query: RefitsQuery):
    """Is the current model stale (since when, why)? What is queued, running, and done?"""
    s = services()
    document = {**model_status(s.database, s.registry),
                "history": s.database.refits.list(limit=query.limit)}
    if is_anonymous():
        for key in ("queued", "running", "history"):
            document[key] = [redact.job(j) for j in document[key]]
    return jsonify(document)


@bp.post("", operation_id="requestRefit", responses={202: Job, **problems(401, 403, 413, 415)})
@require("refits:create")
def create():
    """Ask for a refit now (modeler or admin); coalesces with one already queued."""
    return jsonify(services().refits.request("manual", current_identity().name, delay=0)), 202


@bp.get("/<int:job_id>", operation_id="getRefit", responses={200: Job, **problems(404)})
def get_job(path: JobPath):
    """One refit job: status, timings, the version it produced and its verdict."""
    job = services().database.refits.get(path.job_id)
    if job is None:
        raise Problem(404, "Unknown refit", f"no refit job {path.job_id}")
    return jsonify(redact.job(job) if is_anonymous() else job)
