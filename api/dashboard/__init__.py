"""The forecaster's dashboard at `/`: one page whose script reads the JSON API (no second path
for numbers), with its script and stylesheet served from this server.

Not part of the API: a plain Flask blueprint, so it stays out of the OpenAPI document.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, render_template

# The page runs only its own script and stylesheet, fetches only this server, and shows plots
# fetched with the reader's token as blob: URLs. No inline script or style anywhere.
DASHBOARD_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                 "img-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; "
                 "base-uri 'none'; form-action 'none'")

bp = Blueprint("dashboard", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/dashboard")  # an asset route, like /static/ of the docs


@bp.get("/dashboard")
def index() -> Response:
    """The page. Reads need no token unless the instance closes them: the script then asks."""
    response = Response(render_template("dashboard/index.html"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = DASHBOARD_CSP
    response.headers["Cache-Control"] = "no-cache"
    return response


def init_dashboard(app: Flask) -> None:
    """Serve the dashboard at `/` (and `/dashboard`). flask-openapi3 registers its index of
    documentation pages at `/` first, and the first rule of a path wins: its view is replaced.
    Swagger UI stays at /docs and /swagger."""
    app.register_blueprint(bp)
    app.view_functions["openapi.openapi"] = index
