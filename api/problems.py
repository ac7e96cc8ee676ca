"""RFC 9457 problem+json responses; exceptions become statuses by forecasting.services.errors."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from forecasting.services.errors import ERRORS, classify, field_errors

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


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(exc: Problem):
        return problem_response(exc.status, exc.title, exc.detail, exc.errors, exc.headers)

    def _mapped(exc: Exception):
        status, title = classify(exc)
        if status >= 500:
            log.error("%s: %s", title, exc)
        return problem_response(status, title, str(exc), field_errors(exc))

    for cls, _, _ in ERRORS:
        app.register_error_handler(cls, _mapped)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return problem_response(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # Never a stack trace in a response; the log has it.
        log.exception("unhandled error")
        return problem_response(500, "Internal Server Error",
                                "the server failed to answer; the error was logged")
