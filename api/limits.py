"""What one request may cost: rate limits (Flask-Limiter), the JSON body, the cells of an answer.

Limits come from `settings.limits` (RequestLimits) and `settings.rate_limits` (RateLimits); the
documentation of each is in docs/api.md ("Limits") and docs/operations.md. A request beyond a
limit is refused at once (400, 413, 415 or 429), never served slowly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse

from forecasting.settings import LIMIT_SETTINGS, RateLimits, RequestLimits

from .problems import Problem

log = logging.getLogger(__name__)
# Endpoints that cost far more than a read: many cells, bootstrap resamples or elicitation.
EXPENSIVE = ("forecasts.compare", "forecasts.grid", "forecasts.batch", "priors.check_priors",
             "coding.get_reliability", "priors.elicit_priors", "priors.compare_priors",
             "priors.compare_priors_plot",
             # a live forecast per cell at stake (up to the whole codebook)
             "ledger.register", "ledger.update")
WRITE_METHODS = ("POST", "PUT", "PATCH")
_FAILED_AUTH = "failed-auth"
# The setting behind each request limit, as refusals name it: RequestLimits field -> variable
LIMIT_SETTING_NAMES = {field: name for name, field in LIMIT_SETTINGS.items()}


def request_limits() -> RequestLimits:
    return current_app.extensions["forecasting"].settings.limits


# -- rate limits ---------------------------------------------------------------------------


def init_rate_limits(app: Flask, rates: RateLimits) -> Limiter:
    """Per client address: `reads` on every route, and one `expensive` budget shared by the
    EXPENSIVE routes (call after the blueprints are registered). With the storage down, limits
    fall back to this process's memory rather than failing requests."""
    limiter = Limiter(
        get_remote_address, app=app, default_limits=[rates.reads],
        storage_uri=rates.storage_url, headers_enabled=True, enabled=rates.enabled,
        key_prefix="forecasting", swallow_errors=True, in_memory_fallback_enabled=True)
    expensive = limiter.shared_limit(rates.expensive, scope="expensive", override_defaults=False)
    for endpoint in EXPENSIVE:
        app.view_functions[endpoint] = expensive(app.view_functions[endpoint])
    app.extensions["forecasting_failed_auth"] = (limiter, parse(rates.failed_auth), rates.enabled)
    return limiter


def check_failed_auth_budget() -> None:
    """Before authenticating: an address that sent too many bad or missing tokens waits (429)."""
    limiter, item, enabled = current_app.extensions["forecasting_failed_auth"]
    if not enabled:
        return
    try:
        if limiter.limiter.test(item, _FAILED_AUTH, get_remote_address()):
            return
        reset_at, _ = limiter.limiter.get_window_stats(item, _FAILED_AUTH, get_remote_address())
    except Exception:  # the storage is down: authenticate anyway, as Flask-Limiter does
        log.warning("failed-authentication limit not checked: rate limit storage unavailable")
        return
    retry = max(1, int(reset_at - time.time()) + 1)
    raise Problem(429, "Too Many Requests",
                  f"too many failed authentications from this address ({item}); retry later",
                  headers={"Retry-After": str(retry)})


def count_failed_auth() -> None:
    limiter, item, enabled = current_app.extensions["forecasting_failed_auth"]
    if enabled:
        try:
            limiter.limiter.hit(item, _FAILED_AUTH, get_remote_address())
        except Exception:
            log.warning("failed authentication not counted: rate limit storage unavailable")


# -- the body ------------------------------------------------------------------------------


def json_depth(value, stop: int) -> int:
    """Nesting depth of parsed JSON (a scalar 0, `[]` 1, `{"a": [1]}` 2), stopping past `stop`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > stop:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_body() -> None:
    """before_request, after authentication: a write's body is JSON (415), within
    MAX_CONTENT_LENGTH (413), parseable and nested at most max_json_depth deep (400)."""
    if request.method not in WRITE_METHODS:
        return
    has_body = bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", "").lower()
    if not has_body:
        return
    if not request.is_json:
        raise Problem(415, "Unsupported Media Type",
                      f"Content-Type: {request.mimetype or 'none'} is not accepted; send the body "
                      "as application/json")
    limit = request_limits().max_json_depth
    data = request.get_data(cache=True)  # 413 past MAX_CONTENT_LENGTH
    if not data.strip():
        return
    try:
        payload = json.loads(data)
    except RecursionError:
        raise Problem(400, "Invalid request",
                      f"body: JSON nested more than {limit} levels deep") from None
    except ValueError as exc:
        raise Problem(400, "Invalid request", f"body: not valid JSON ({exc})") from None
    if json_depth(payload, limit) > limit:
        raise Problem(400, "Invalid request", f"body: JSON nested more than {limit} levels deep")


# -- cells and rows ------------------------------------------------------------------------


def unique_codes(codes: list[str]) -> list[str]:
    """Codes in their first order, each once: a repeated code asks for nothing new."""
    return list(dict.fromkeys(codes))


def check_cells(cells: int, fields: str) -> None:
    """400 when an answer would hold more than max_cells forecast cells."""
    limit = request_limits().max_cells
    if cells > limit:
        raise Problem(400, "Too many cells",
                      f"{fields}: the request asks for {cells} cells; at most {limit} are "
                      f"answered at once ({LIMIT_SETTING_NAMES['max_cells']}): ask for fewer "
                      "codes",
                      errors=[{"field": fields, "message": f"{cells} cells, more than {limit}"}])


def check_batch_rows(rows: int, field: str = "episodes") -> None:
    """413 when a batch holds more than max_batch_rows rows."""
    limit = request_limits().max_batch_rows
    if rows > limit:
        raise Problem(413, "Request too large",
                      f"{field}: {rows} rows; at most {limit} per request "
                      f"({LIMIT_SETTING_NAMES['max_batch_rows']}): send the rest in further "
                      "requests")
