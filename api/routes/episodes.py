"""Coded episodes: list, read with history, create (one or a batch), revise."""

from __future__ import annotations

from flask import jsonify, request
from flask_openapi3 import APIBlueprint, Tag

from forecasting.services import episodes as episode_service
from forecasting.store import EpisodeFilter

from .. import redact
from ..auth import current_identity, is_anonymous, require
from ..limits import check_batch_rows
from ..openapi import EPISODE_BATCH_REF, EPISODE_REF
from ..problems import Problem
from ..schemas import (
    EPISODE_EXAMPLE,
    EpisodeKey,
    EpisodePage,
    EpisodeQuery,
    EpisodeWithHistory,
    ImportResult,
)
from ..services import services
from .common import problems

TAG = Tag(name="episodes",
          description="Coded episodes (the data): list, read with revisions, create, revise")
bp = APIBlueprint("episodes", __name__, url_prefix="/v1/episodes", abp_tags=[TAG])

_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"oneOf": [EPISODE_REF, EPISODE_BATCH_REF]},
    "examples": {"one": {"summary": "One episode", "value": EPISODE_EXAMPLE},
                 "batch": {"summary": "A batch (all or nothing)",
                           "value": {"episodes": [EPISODE_EXAMPLE]}}}}}}}
_ONE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": EPISODE_REF, "example": EPISODE_EXAMPLE}}}}


def _json_body():
    body = request.get_json(silent=True)
    if body is None:
        raise Problem(400, "Invalid request", "the body must be a JSON object")
    return body


def _write(rows: list) -> dict:
    """Import exactly as `forecast import` does: all or nothing, then a refit is queued."""
    s = services()
    outcome = episode_service.import_episodes(
        s.database, s.codebook, s.refits, enumerate(rows, start=1),
        actor=current_identity().name, source="api")
    return outcome.as_dict()


@bp.get("", operation_id="listEpisodes", responses={200: EpisodePage, **problems(400)})
def list_episodes(query: EpisodeQuery):
    """Episodes in trigger-date order, filtered and paginated (`limit`, `offset`).

    An unknown partner, intelligence type or trigger type is a 400 naming the field and
    the codes allowed, not an empty page.
    """
    where = EpisodeFilter(
        partner=[query.partner] if query.partner else (),
        intel_type=[query.intel_type] if query.intel_type else (),
        trigger_type=[query.trigger_type] if query.trigger_type else (),
        trigger_id=[query.trigger_id] if query.trigger_id else (),
        level=[query.level] if query.level is not None else (),
        since=query.since, until=query.until)
    s = services()
    return jsonify(episode_service.list_episodes(s.database, s.codebook, where,
                                                 limit=query.limit, offset=query.offset))


@bp.post("", operation_id="createEpisodes",
         responses={201: ImportResult, 200: ImportResult, **problems(400, 401, 403, 413, 415)},
         openapi_extensions=_BODY)
@require("episodes:write")
def create():
    """Add one episode, or `{"episodes": [...]}`; idempotent on (trigger_id, partner, intel_type).

    A row whose key exists with other values becomes a revision (old values kept) when its
    coder is the episode's; another coder's row is that coder's coding of the episode
    (counted in `codings`, not a revision: see /v1/coding/disagreements).
    One bad row rejects the whole batch; the error lists every bad row (1-based `line`).
    """
    payload = _json_body()
    if isinstance(payload, dict) and set(payload) == {"episodes"}:
        rows = payload["episodes"]
        if not isinstance(rows, list) or not rows:
            raise Problem(400, "Invalid request", "episodes: must be a non-empty array")
        check_batch_rows(len(rows))
    elif isinstance(payload, dict):
        rows = [payload]
    else:
        raise Problem(400, "Invalid request", "the body must be an episode object or "
                      '{"episodes": [...]}')
    result = _write(rows)
    created = result["inserted"] or result["revised"] or result["codings"]
    return jsonify(result), 201 if created else 200


@bp.get("/<trigger_id>/<partner>/<intel_type>", operation_id="getEpisode",
        responses={200: EpisodeWithHistory, **problems(404)})
def get_episode(path: EpisodeKey):
    """One episode with every revision: what changed, when, and (to a token holder) who."""
    record = services().database.episodes.get(path.trigger_id, path.partner, path.intel_type)
    return jsonify(redact.episode(record) if is_anonymous() else record)


@bp.put("/<trigger_id>/<partner>/<intel_type>", operation_id="reviseEpisode",
        responses={200: ImportResult, **problems(400, 401, 403, 404, 413, 415)},
        openapi_extensions=_ONE_BODY)
@require("episodes:write")
def revise(path: EpisodeKey):
    """Revise an existing episode: send the whole row; changed fields become a revision."""
    s = services()
    s.database.episodes.get(path.trigger_id, path.partner, path.intel_type)  # 404 if absent
    row = _json_body()
    if not isinstance(row, dict):
        raise Problem(400, "Invalid request", "the body must be an episode object")
    key = {"trigger_id": path.trigger_id, "partner": path.partner, "intel_type": path.intel_type}
    clashes = [k for k, v in key.items() if k in row and row[k] != v]
    if clashes:
        raise Problem(400, "Invalid request",
                      f"{clashes[0]}: differs from the URL; the natural key cannot be revised")
    return jsonify(_write([{**row, **key}]))
