"""HTTP as the specs say: who may call (before any validation), statuses, headers, what open
reads show, readiness, and JSON that is always JSON (issue 15)."""

import dataclasses
import json
import logging

import pytest
from fixtures_api import auth
from sqlalchemy import create_engine

from api import create_app
from api.responses import FiniteJSONProvider

EPISODE_URL = "/v1/episodes/2017-oval-office-disclosure/ISR/humint"
# Every write route, the role that may not call it, and a body no schema accepts.
WRITES = [
    ("POST", "/v1/episodes", "reader", {"partner": 7}),
    ("PUT", EPISODE_URL, "reader", {"level": "high"}),
    ("PUT", "/v1/priors", "coder", {"priors": "none"}),
    ("POST", "/v1/priors/check", "coder", {"priors": []}),
    ("POST", "/v1/models/current/promote", "coder", {"reason": 42}),
    ("POST", "/v1/refits", "coder", {"why": "now"}),
    ("POST", "/v1/coding/adjudications", "coder", {"values": 7}),
    ("POST", "/v1/ledger/triggers", "reader", {"partners": 7}),
    ("POST", "/v1/ledger/triggers/x/forecasts", "modeler", {"note": 7}),
    ("POST", "/v1/ledger/entries/1/corrections", "reader", {"reason": 7}),
]


def _send(client, method, url, **kwargs):
    return client.open(url, method=method, **kwargs)


def test_every_write_route_is_in_the_table_above(app):
    written = {(m, rule.rule) for rule in app.url_map.iter_rules()
               for m in rule.methods & {"POST", "PUT", "PATCH", "DELETE"}}
    written.discard(("POST", "/v1/forecasts/batch"))  # a read with a body: open like reads
    written.discard(("POST", "/v1/priors/elicit"))  # a dry run with a body: open like reads
    listed = {(m, u.replace("2017-oval-office-disclosure/ISR/humint",
                            "<trigger_id>/<partner>/<intel_type>").replace("current", "<version>")
              .replace("triggers/x/", "triggers/<trigger_id>/").replace("/1/", "/<int:seq>/"))
              for m, u, _, _ in WRITES}
    assert written == listed


@pytest.mark.parametrize(("method", "url", "wrong_role", "body"), WRITES)
def test_writes_check_the_token_before_the_body(client, tokens, method, url, wrong_role, body):
    anonymous = _send(client, method, url, json=body)
    assert anonymous.status_code == 401, anonymous.get_json()
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert "errors" not in anonymous.get_json()  # nothing of the schema is told
    forbidden = _send(client, method, url, json=body, headers=auth(tokens[wrong_role]))
    assert forbidden.status_code == 403 and "errors" not in forbidden.get_json()
    assert wrong_role in forbidden.get_json()["detail"]
    allowed = _send(client, method, url, json=body, headers=auth(tokens["admin"]))
    assert allowed.status_code in (400, 202)  # the refit route takes no body and ignores it


@pytest.mark.parametrize(("method", "url"), [(m, u) for m, u, _, _ in WRITES]
                         + [("POST", "/v1/forecasts/batch"), ("POST", "/v1/priors/elicit")])
def test_deeply_nested_json_is_400_on_every_json_route(client, tokens, method, url):
    for body in ("[" * 100_000 + "]" * 100_000, json.dumps(_nested(17))):
        r = _send(client, method, url, data=body, content_type="application/json",
                  headers=auth(tokens["admin"]))
        assert r.status_code == 400 and r.mimetype == "application/problem+json"
        assert "nested more than 16 levels" in r.get_json()["detail"]


def _nested(depth):
    value = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_a_body_that_is_not_json_is_415(client, tokens):
    r = client.post("/v1/episodes", data="partner=ISR", headers=auth(tokens["coder"]),
                    content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415 and r.mimetype == "application/problem+json"
    assert "application/json" in r.get_json()["detail"]


def test_a_method_a_route_lacks_is_405_with_allow(client):
    r = client.delete("/v1/episodes")
    assert r.status_code == 405 and r.mimetype == "application/problem+json"
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def _rendered(settings, version, name="forest"):
    """The plot as if rendered before (PlotCache's file): these tests are about headers, and
    rendering costs seconds (tests/test_api_models.py renders)."""
    path = settings.instance_path / "plots" / version / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n stand-in")


def test_security_headers_on_every_kind_of_answer(client, served_model, api_settings):
    _rendered(api_settings, served_model.version)
    for r in (client.get("/v1/vocab"), client.get("/v1/forecasts?partner=XXX&intel_type=ct"),
              client.get("/v1/models/current/plots/forest.png"), client.get("/swagger")):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert client.get("/v1/vocab").headers["Content-Security-Policy"].startswith(
        "default-src 'none'")
    # Swagger UI loads its own scripts from this server: its page allows them, nothing else
    swagger = client.get("/swagger").headers["Content-Security-Policy"]
    assert "script-src 'self'" in swagger and "http" not in swagger


def test_a_plot_the_version_lacks_is_404_and_not_cached(client, second_model, api_settings):
    r = client.get(f"/v1/models/{second_model.version}/plots/energy.png")
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    assert "immutable" not in r.headers.get("Cache-Control", "")
    assert not (api_settings.instance_path / "plots" / second_model.version / "energy.png"
                ).exists()


def test_plot_caching_follows_the_alias(client, served_model, api_settings):
    _rendered(api_settings, served_model.version)
    current = client.get("/v1/models/current/plots/forest.png")
    assert current.headers["Cache-Control"] == "no-cache"  # current moves at each promotion
    again = client.get("/v1/models/current/plots/forest.png",
                       headers={"If-None-Match": current.headers["ETag"]})
    assert again.status_code == 304
    pinned = client.get(f"/v1/models/{served_model.version}/plots/forest.png")
    assert pinned.headers["Cache-Control"] == "public, max-age=86400, immutable"


def test_with_closed_reads_no_answer_is_public(api_settings, tokens, served_model):
    settings = dataclasses.replace(api_settings, open_reads=False)
    client = create_app({"SETTINGS": settings}).test_client()
    headers = auth(tokens["reader"])
    _rendered(api_settings, served_model.version)
    pinned = client.get(f"/v1/models/{served_model.version}/plots/forest.png", headers=headers)
    assert pinned.headers["Cache-Control"] == "private, max-age=86400, immutable"
    forecast = client.get("/v1/forecasts?partner=ISR&intel_type=ct", headers=headers)
    assert forecast.headers["Cache-Control"] == "private, no-cache"


def test_open_reads_name_no_token_worker_or_error(client, tokens, api_settings):
    job = client.post("/v1/refits", headers=auth(tokens["modeler"])).get_json()
    anonymous = client.get("/v1/refits").get_json()
    shown = anonymous["queued"] + anonymous["history"] + [client.get(f"/v1/refits/{job['id']}")
                                                          .get_json()]
    assert shown and all(k not in j for j in shown for k in ("requested_by", "worker", "detail"))
    assert "modeler-token" not in json.dumps(anonymous)
    holder = client.get(f"/v1/refits/{job['id']}", headers=auth(tokens["reader"])).get_json()
    assert holder["requested_by"] == "modeler-token"


def test_server_errors_show_no_paths(client, api_settings):
    for url in ("/v1/forecasts?partner=ISR&intel_type=ct", "/ready", "/v1/priors",
                "/v1/models/current"):
        text = client.get(url).get_data(as_text=True)
        for folder in (api_settings.instance_path, api_settings.priors_dir,
                       api_settings.data_dir.parent):
            assert str(folder) not in text, url
    assert client.get("/ready").status_code == 503


def test_ready_needs_the_database_too(app, client, served_model, tmp_path, caplog):
    assert client.get("/ready").status_code == 200
    database = app.extensions["forecasting"].database
    kept = database.engine
    try:
        database.engine = create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")  # no tables
        r = client.get("/ready")
        assert r.status_code == 503 and r.get_json()["detail"] == "the database does not answer"
        assert "episodes" in caplog.text  # the log says why
    finally:
        database.engine.dispose()
        database.engine = kept


def test_json_answers_never_hold_nan(app):
    provider = FiniteJSONProvider(app)
    text = provider.dumps({"rhat": float("nan"), "ess": [float("inf"), 1.5, -float("inf")]})
    assert json.loads(text, parse_constant=_refuse) == {"rhat": None, "ess": [None, 1.5, None]}
    assert isinstance(app.json, FiniteJSONProvider)


def test_a_diagnostic_that_is_nan_is_served_as_null(app, client, failed_model, monkeypatch):
    registry = app.extensions["forecasting"].registry
    stored = registry.get(failed_model.version)
    metadata = {**stored.metadata, "diagnostics": {**stored.metadata["diagnostics"],
                                                    "max_rhat": float("nan")}}
    nan_version = dataclasses.replace(stored, metadata=metadata)
    # a degenerate fit's R-hat, as read from its metadata
    monkeypatch.setattr(registry, "get", lambda version: nan_version)
    r = client.get(f"/v1/models/{failed_model.version}/diagnostics")
    assert r.status_code == 200
    body = json.loads(r.get_data(as_text=True), parse_constant=_refuse)
    assert body["diagnostics"]["max_rhat"] is None


def _refuse(name):
    raise AssertionError(f"{name} is not JSON")


def test_failed_authentications_are_logged_without_the_token(client, caplog):
    caplog.set_level(logging.WARNING, logger="forecasting.auth")
    token = "fct_guessed-token-value"
    r = client.post("/v1/refits", headers=auth(token))
    assert r.status_code == 401 and "unknown, revoked or expired" in r.get_json()["detail"]
    client.post("/v1/refits")
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "forecasting.auth"]
    assert len(logged) == 2 and all("127.0.0.1" in m for m in logged)
    assert "unknown, revoked or expired" in logged[0] and "no bearer token" in logged[1]
    assert token not in caplog.text and "guessed" not in caplog.text
