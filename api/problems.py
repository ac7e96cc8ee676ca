"""RFC 9457 problem+json responses, and the one place exceptions become HTTP statuses."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from forecasting.domain.codebook import UnknownCodeError
from forecasting.domain.episodes import EpisodeValidationError
from forecasting.model.priors import PriorConfigError
from forecasting.registry import (
    GateFailedError,
    IntegrityError,
    NoCurrentModelError,
    UnknownVersionError,
    VersionExistsError,
)
from forecasting.serving.forecasts import NotInModelError, ScenarioError
from forecasting.store import UnknownEpisodeError
from forecasting.store.tokens import TokenError

log = logging.getLogger(__name__)
PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise from a view to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str = "", errors: list | None = None,
                 headers: dict | None = None):
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.headers = errors, headers or {}


def problem_response(status: int, title: str, detail: str = "", errors: list | None = None,
                     headers: dict | None = None):
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_TYPE
    response.headers.update(headers or {})
    return response


def pydantic_errors(exc: ValidationError, prefix: str = "") -> list[dict]:
    out = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error.get("loc", ()))
        out.append({"field": f"{prefix}{field}" if field else prefix or "body",
                    "message": error["msg"].removeprefix("Value error, ")})
    return out


def validation_error_response(exc: ValidationError):
    """flask-openapi3's hook for request parameters and bodies that fail their schema."""
    errors = pydantic_errors(exc)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:20])
    return problem_response(400, "Invalid request", detail, errors)


# exception class -> (status, title)
_MAPPED = [
    (EpisodeValidationError, 400, "Invalid episodes"),
    (ScenarioError, 400, "Invalid scenario"),
    (TokenError, 400, "Invalid token request"),
    (PriorConfigError, 400, "Invalid priors"),
    (UnknownEpisodeError, 404, "Unknown episode"),
    (UnknownVersionError, 404, "Unknown model version"),
    (NotInModelError, 404, "Not in this model version"),
    (UnknownCodeError, 404, "Unknown code"),
    (GateFailedError, 409, "Model version failed its diagnostics gate"),
    (VersionExistsError, 409, "Model version exists"),
    (NoCurrentModelError, 503, "No current model"),
    (IntegrityError, 500, "Model version is corrupted"),
]


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(exc: Problem):
        return problem_response(exc.status, exc.title, exc.detail, exc.errors, exc.headers)

    for cls, status, title in _MAPPED:
        def handler(exc, status=status, title=title):
            errors = None
            if isinstance(exc, EpisodeValidationError):
                errors = [{"field": e.field, "line": e.line, "message": e.message}
                          for e in exc.errors]
            elif isinstance(exc, UnknownCodeError):
                errors = [{"field": exc.field, "message": f"unknown code {exc.value!r}",
                           "allowed": exc.allowed}]
            if status == 500:
                log.error("%s: %s", title, exc)
            return problem_response(status, title, str(exc), errors)

        app.register_error_handler(cls, handler)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return problem_response(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # Never a stack trace in a response; the log has it.
        log.exception("unhandled error")
        return problem_response(500, "Internal Server Error",
                                "the server failed to answer; the error was logged")
