"""The HTTP API: `create_app(config)` builds a Flask app with one blueprint per resource."""

from __future__ import annotations

from flask import redirect
from flask_openapi3 import Info

from forecasting.settings import Settings, load_settings

from .auth import check_read_access
from .openapi import ForecastAPI
from .problems import register_error_handlers, validation_error_response
from .services import Services

DEFAULTS = {
    "MAX_CONTENT_LENGTH": 8 * 1024 * 1024,  # a 10,000-episode batch fits; more is refused (413)
    "PROPAGATE_EXCEPTIONS": False,
}
BEARER = {"bearer": {"type": "http", "scheme": "bearer",
                     "description": "Create one with `forecast token create NAME --role ROLE`"}}


def create_app(config: dict | None = None) -> ForecastAPI:
    """Build the app. `config` may hold SETTINGS (a forecasting Settings) and Flask keys."""
    config = dict(config or {})
    settings: Settings = config.pop("SETTINGS", None) or load_settings()
    app = ForecastAPI(
        __name__,
        info=Info(title="Intelligence-sharing restriction forecasts", version="1",
                  description="Posterior forecasts of partners restricting intelligence shared "
                              "with the US, with their uncertainty and the diagnostics behind "
                              "them."),
        security_schemes=BEARER,
        doc_prefix="",
        doc_url="/openapi.json",
        validation_error_status=400,
        validation_error_callback=validation_error_response,
    )
    app.json.sort_keys = False  # keep the documented key order of forecasts
    app.config.from_mapping(DEFAULTS)
    app.config.update(config)
    app.extensions["forecasting"] = Services.from_settings(settings)
    app.codebook = app.extensions["forecasting"].codebook

    register_error_handlers(app)
    app.before_request(check_read_access)

    from .routes import episodes, evaluation, forecasts, health, models, priors, refits

    for module in (health, forecasts, models, evaluation, episodes, priors, refits):
        app.register_api(module.bp)

    @app.get("/docs", doc_ui=False)
    def docs():
        return redirect("/swagger", code=302)

    return app
