"""What every response carries: finite JSON, security headers, cache headers that follow the alias.

JSON has no NaN or Infinity; Python's encoder writes them as bare `NaN`, which strict parsers
refuse. A non-finite number in an answer (a prior check of an extreme prior, a degenerate
diagnostic) is served as `null`: the value is unknown, and the document stays valid JSON.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider

from forecasting.json_values import finite

# The API serves JSON and PNG only: nothing may run, load or frame from it.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI's page (flask-openapi3-swagger) loads its bundle from this server and starts it
# with an inline script; it fetches /openapi.json and uses data: images in its stylesheet.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
DOCS_PATHS = ("/swagger", "/oauth2-redirect")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
IMMUTABLE_FOR = 86400  # seconds a client may keep a plot of an explicit version unasked


class FiniteJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, but NaN and infinities are written as null, never as `NaN`."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs["allow_nan"] = False
        try:
            return super().dumps(obj, **kwargs)
        except ValueError:  # "Out of range float values are not JSON compliant": walk once
            return super().dumps(finite(obj), **kwargs)


def add_security_headers(response: Response) -> Response:
    """after_request: the same protective headers on every answer, errors included."""
    if response.status_code not in (429, 503):  # Flask-Limiter adds it to every answer
        response.headers.pop("Retry-After", None)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    docs = request.path.startswith(DOCS_PATHS)
    response.headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else API_CSP)
    return response


def cache_control(*, explicit_version: bool, open_reads: bool) -> str:
    """Cache-Control of an answer fixed by a model version.

    An explicit version id never changes: a client may keep it a day without asking. `current`
    moves at every promotion: store, but revalidate (ETag) each time. With closed reads no shared
    cache may keep it (`private`), since it was served to a token holder only.
    """
    scope = "public" if open_reads else "private"
    if explicit_version:
        return f"{scope}, max-age={IMMUTABLE_FOR}, immutable"
    return "no-cache" if open_reads else "private, no-cache"


def init_responses(app: Flask) -> None:
    app.after_request(add_security_headers)
