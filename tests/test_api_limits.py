"""Every request's work is bounded (settings.limits) and callers are throttled
(settings.rate_limits, Flask-Limiter): refused at once with a clear problem, never served
slowly (issue 15)."""

import dataclasses
import secrets

import pytest
from fixtures_api import auth
from helpers import episode_row

from api import create_app
from forecasting.settings import RateLimits, load_settings


def _app(settings, **limits):
    settings = dataclasses.replace(settings,
                                   limits=dataclasses.replace(settings.limits, **limits))
    return create_app({"SETTINGS": settings})


def _rated(settings, **rates):
    rates = RateLimits(**{"reads": "1000/minute", "expensive": "1000/minute",
                          "failed_auth": "1000/minute", **rates})
    return create_app({"SETTINGS": dataclasses.replace(settings, rate_limits=rates)})


def _json_row(**overrides):
    row = episode_row(**overrides)
    return {**row, "severity": int(row["severity"]), "alignment": int(row["alignment"]),
            "level": int(row["level"])}


def test_refusals_name_the_settings_that_load_settings_reads(api_settings, tokens, served_model):
    cells = _app(api_settings, max_cells=4).test_client().get(
        "/v1/forecasts/compare?partner=ISR,GBR,CAN&intel_type=ct,humint").get_json()["detail"]
    rows = _app(api_settings, max_batch_rows=3).test_client().post(
        "/v1/episodes", headers=auth(tokens["coder"]), json={"episodes": [
            _json_row(partner=p, intel_type="ct") for p in ("GBR", "CAN", "AUS", "NZL")]})
    assert "FORECAST_LIMIT_MAX_CELLS" in cells
    assert "FORECAST_LIMIT_MAX_BATCH_ROWS" in rows.get_json()["detail"]
    read = load_settings({"FORECAST_LIMIT_MAX_CELLS": "7", "FORECAST_LIMIT_MAX_BATCH_ROWS": "9"})
    assert (read.limits.max_cells, read.limits.max_batch_rows) == (7, 9)


def test_compare_answers_each_repeated_code_once(client, served_model):
    r = client.get("/v1/forecasts/compare?partner=ISR,ISR,GBR,ISR&intel_type=ct,ct,ct"
                   "&trigger_type_b=legal_case")
    assert r.status_code == 200
    assert [(c["partner"], c["intel_type"]) for c in r.get_json()["comparisons"]] == [
        ("ISR", "ct"), ("GBR", "ct")]


def test_more_cells_than_the_limit_are_refused_naming_the_parameter(api_settings, served_model):
    client = _app(api_settings, max_cells=4).test_client()
    ok = client.get("/v1/forecasts/compare?partner=ISR,GBR&intel_type=ct,ct,humint,humint")
    assert ok.status_code == 200  # 2 x 2 after de-duplication
    r = client.get("/v1/forecasts/compare?partner=ISR,GBR,CAN&intel_type=ct,humint")
    assert r.status_code == 400 and r.mimetype == "application/problem+json"
    assert "partner x intel_type: the request asks for 6 cells; at most 4" in r.get_json()["detail"]
    grid = client.get("/v1/forecasts/grid")
    assert grid.status_code == 400 and "at most 4" in grid.get_json()["detail"]
    queries = [{"partner": "ISR", "intel_type": t} for t in ("ct", "humint", "sigint", "geoint",
                                                              "cyber")]
    batch = client.post("/v1/forecasts/batch", json={"queries": queries})
    assert batch.status_code == 400 and batch.get_json()["detail"].startswith("queries:")


def test_answers_use_at_most_max_draws_and_say_how_many(api_settings, client, served_model):
    # the session's fit has 4 x 500 draws; the default limit (1000) thins them evenly
    assert served_model.metadata["sampler"]["draws"] * 4 > 1000
    body = client.get("/v1/forecasts?partner=ISR&intel_type=ct").get_json()
    assert body["model"]["draws_used"] == 1000
    few = _app(api_settings, max_draws=100).test_client()
    thinned = few.get("/v1/forecasts?partner=ISR&intel_type=ct").get_json()
    assert thinned["model"]["draws_used"] == 100
    grid = few.get("/v1/forecasts/grid").get_json()
    assert {f["model"]["draws_used"] for f in grid["forecasts"]} == {100}


def test_a_batch_beyond_max_batch_rows_is_413_and_writes_nothing(api_settings, tokens):
    client = _app(api_settings, max_batch_rows=3).test_client()
    rows = [_json_row(partner=p, intel_type="ct") for p in ("GBR", "CAN", "AUS", "NZL")]
    r = client.post("/v1/episodes", json={"episodes": rows}, headers=auth(tokens["coder"]))
    assert r.status_code == 413 and "episodes: 4 rows; at most 3" in r.get_json()["detail"]
    assert client.get("/v1/episodes").get_json()["total"] == 8


def test_error_lists_stop_at_max_errors_listed_and_count_the_rest(api_settings, tokens):
    client = _app(api_settings, max_errors_listed=2).test_client()
    rows = [_json_row(partner="XXX", intel_type="ct", trigger_id=f"t{i}") for i in range(5)]
    body = client.post("/v1/episodes", json={"episodes": rows},
                       headers=auth(tokens["coder"])).get_json()
    assert [e["line"] for e in body["errors"]] == [1, 2]
    assert body["errors_omitted"] == 3


def test_the_body_size_limit_comes_from_the_settings(api_settings, tokens):
    client = _app(api_settings, max_body_bytes=1000).test_client()
    r = client.post("/v1/episodes", json={"episodes": [_json_row()] * 20},
                    headers=auth(tokens["coder"]))
    assert r.status_code == 413 and r.mimetype == "application/problem+json"


def test_reads_past_the_rate_limit_get_429_with_retry_after(api_settings):
    client = _rated(api_settings, reads="3/minute").test_client()
    assert [client.get("/v1/vocab").status_code for _ in range(3)] == [200] * 3
    r = client.get("/v1/vocab")
    assert r.status_code == 429 and r.mimetype == "application/problem+json"
    assert 0 < int(r.headers["Retry-After"]) <= 60
    assert "rate limit exceeded" in r.get_json()["detail"]
    # per client address: another address still gets answers
    assert client.get("/v1/vocab", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_expensive_routes_have_their_own_lower_limit(api_settings, served_model):
    client = _rated(api_settings, expensive="2/minute").test_client()
    url = "/v1/forecasts/compare?partner=ISR&intel_type=ct"
    assert [client.get(url).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/v1/forecasts/grid").status_code == 429  # one budget for them all
    assert client.get("/v1/forecasts?partner=ISR&intel_type=ct").status_code == 200


def test_repeated_failed_authentications_are_throttled(api_settings, tokens):
    client = _rated(api_settings, failed_auth="2/minute").test_client()
    bad = auth("fct_wrong")
    assert [client.post("/v1/refits", headers=bad).status_code for _ in range(2)] == [401, 401]
    r = client.post("/v1/refits", headers=auth(tokens["modeler"]))
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert client.get("/v1/vocab").status_code == 200  # reads need no token: not affected


def test_rate_limits_off_by_setting(api_settings):
    rates = RateLimits(reads="1/minute", enabled=False)
    client = create_app({"SETTINGS": dataclasses.replace(api_settings, rate_limits=rates)}
                        ).test_client()
    assert {client.get("/v1/vocab").status_code for _ in range(5)} == {200}


@pytest.fixture
def redis_url():
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/12"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379 (the shared rate-limit storage is tested there)")
    return url


def test_servers_sharing_redis_share_the_limits(api_settings, redis_url):
    rates = {"reads": "3/minute", "storage_url": redis_url}
    first, second = (_rated(api_settings, **rates).test_client() for _ in range(2))
    # counts are per client address: one no other run has used, so nothing needs clearing
    address = {"REMOTE_ADDR": ".".join(["10"] + [str(secrets.randbelow(250) + 1)
                                                 for _ in range(3)])}
    codes = [c.get("/v1/vocab", environ_base=address).status_code
             for c in (first, second, first, second)]
    assert codes == [200, 200, 200, 429]
