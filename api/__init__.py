"""The HTTP API: `create_app(config)` builds a Flask app with one blueprint per resource."""

from __future__ import annotations

from flask import redirect
from flask_openapi3 import Info

from forecasting.settings import Settings, load_settings

from .auth import check_access
from .deprecation import init_deprecation
from .limits import check_body, init_rate_limits
from .openapi import ForecastAPI
from .problems import MAX_ERRORS_KEY, register_error_handlers, validation_error_response
from .responses import init_responses
from .services import Services

DEFAULTS = {
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
                              "them. Within /v1 the contract only grows: nothing is removed "
                              "or changed incompatibly; a deprecated operation is marked so and "
                              "answers with Deprecation and Sunset headers (docs/api.md, "
                              "Versioning and deprecation)."),
        security_schemes=BEARER,
        doc_prefix="",
        doc_url="/openapi.json",
        validation_error_status=400,
        validation_error_callback=validation_error_response,
    )
    app.json.sort_keys = False  # keep the documented key order of forecasts
    app.config.from_mapping(DEFAULTS)
    # a 10,000-episode batch fits in the default; more is refused (413)
    app.config["MAX_CONTENT_LENGTH"] = settings.limits.max_body_bytes
    app.config[MAX_ERRORS_KEY] = settings.limits.max_errors_listed
    app.config.update(config)
    app.extensions["forecasting"] = Services.from_settings(settings)
    app.codebook = app.extensions["forecasting"].codebook
    app.open_reads = settings.open_reads  # the document says which operations need a token

    register_error_handlers(app)
    init_responses(app)
    init_deprecation(app)
    if settings.metrics:  # first: its clock starts before any check may refuse the request
        from .metrics import init_metrics

        init_metrics(app, settings)

    from .routes import coding, episodes, evaluation, forecasts, health, horizons, models, priors, refits

    for module in (health, forecasts, horizons, models, evaluation, episodes, coding, priors,
                   refits):
        app.register_api(module.bp)
    from .routes import ledger  # issue 19

    app.register_api(ledger.bp)

    # before_request order: rate limits (Flask-Limiter registers first), then who is calling
    # and may they (401/403), then the body (415/413/400); the schemas validate only after.
    init_rate_limits(app, settings.rate_limits)
    app.before_request(check_access)
    app.before_request(check_body)

    @app.get("/docs", doc_ui=False)
    def docs():
        return redirect("/swagger", code=302)

    from .dashboard import init_dashboard

    init_dashboard(app)  # the forecaster's page at / (in place of flask-openapi3's index)
    return app
