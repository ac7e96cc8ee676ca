"""RFC 9457 problem+json responses; exceptions become statuses by forecasting.services.errors."""

from __future__ import annotations

import logging

from flask import Flask, current_app, has_app_context, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from forecasting.services.errors import ERRORS, classify, field_errors

log = logging.getLogger(__name__)
PROBLEM_TYPE = "application/problem+json"
MAX_ERRORS_KEY = "PROBLEM_MAX_ERRORS_LISTED"  # app.config: settings.limits.max_errors_listed
MAX_DETAIL_CHARS = 2000
# What a 5xx answer says: fixed sentences, since the exception's own text can hold a path, a
# database URL or a host name (the log has it whole).
SERVER_DETAILS = {
    "No current model": "no model version is current yet; an operator must fit or promote one",
    "Database not initialised": "the database is not initialised or not up to date; an "
                                "operator must run `forecast init`",
    "Model version is corrupted": "the model version's files fail their integrity check; an "
                                  "operator must promote another version",
}


class Problem(Exception):
    """Raise from a view to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str = "", errors: list | None = None,
                 headers: dict | None = None):
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.headers = errors, headers or {}


def problem_response(status: int, title: str, detail: str = "", errors: list | None = None,
                     headers: dict | None = None, omitted: int = 0):
    """`omitted`: errors already left out before `errors` (the domain cuts its own lists)."""
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = (detail if len(detail) <= MAX_DETAIL_CHARS
                          else detail[:MAX_DETAIL_CHARS] + " ...")
    if errors:
        shown = current_app.config.get(MAX_ERRORS_KEY, 100) if has_app_context() else 100
        body["errors"] = errors[:shown]
        omitted += max(0, len(errors) - shown)
    if omitted:
        body["errors_omitted"] = omitted
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_TYPE
    response.headers.update(headers or {})
    return response


def pydantic_errors(exc: ValidationError, prefix: str = "") -> list[dict]:
    out = []
    for error in exc.errors():
        # queries[1].partner, as the service layer names a field of a list item
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                        for p in error.get("loc", ())).lstrip(".")
        out.append({"field": f"{prefix}{field}" if field else prefix or "body",
                    "message": error["msg"].removeprefix("Value error, ")})
    return out


def validation_error_response(exc: ValidationError):
    """flask-openapi3's hook for request parameters and bodies that fail their schema."""
    errors = pydantic_errors(exc)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:20])
    if len(errors) > 20:
        detail += f"; and {len(errors) - 20} more"
    return problem_response(400, "Invalid request", detail, errors)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(exc: Problem):
        return problem_response(exc.status, exc.title, exc.detail, exc.errors, exc.headers)

    def _mapped(exc: Exception):
        status, title = classify(exc)
        if status >= 500:
            log.error("%s: %s", title, exc)
            return problem_response(status, title,
                                    SERVER_DETAILS.get(title, "the error was logged"))
        return problem_response(status, title, str(exc), field_errors(exc),
                                omitted=getattr(exc, "unlisted", 0))

    for cls, _, _ in ERRORS:
        app.register_error_handler(cls, _mapped)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        # keep what the status needs (Allow on 405, Retry-After on 429), not the HTML type
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        detail = exc.description or ""
        if exc.code == 429:
            detail = (f"rate limit exceeded ({detail}) for this client address; retry after "
                      "the seconds in Retry-After")
        return problem_response(exc.code or 500, exc.name, detail, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # Never a stack trace in a response; the log has it.
        log.exception("unhandled error")
        return problem_response(500, "Internal Server Error",
                                "the server failed to answer; the error was logged")
