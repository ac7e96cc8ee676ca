"""Helpers the blueprints share: problem documentation, version-keyed caching headers."""

from __future__ import annotations

import hashlib

from flask import Response, jsonify, request

from ..openapi import PROBLEM_REF
from ..responses import cache_control
from ..services import services

_TITLES = {400: "Invalid request", 401: "Missing or invalid bearer token",
           403: "The token's role may not do this", 404: "Not found",
           409: "Conflict", 413: "Request too large", 415: "The body is not application/json",
           429: "Rate limit exceeded (see Retry-After)", 503: "No current model"}


def problems(*codes: int) -> dict:
    """OpenAPI response objects for the problem+json answers a route may give."""
    return {code: {"description": _TITLES.get(code, "Problem"),
                   "content": {"application/problem+json": {"schema": PROBLEM_REF}}}
            for code in codes}


def versioned(payload: dict, version: str) -> Response:
    """JSON that depends only on the model version (and the request): ETag and revalidation."""
    tag = hashlib.sha256(f"{version}|{request.full_path}|{request.get_data()!r}".encode()
                         ).hexdigest()[:24]
    response = jsonify(payload)
    response.set_etag(f"{version}-{tag}")
    response.make_conditional(request)  # 304 when If-None-Match matches
    # no-cache = store, but revalidate: a promoted version must show up at once
    response.headers["Cache-Control"] = cache_control(
        explicit_version=False, open_reads=services().settings.open_reads)
    response.headers["X-Model-Version"] = version
    return response
