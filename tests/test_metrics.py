"""GET /metrics: requests by route, refusals, refits and the model, and several workers' sums."""

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures_api import auth
from fixtures_registry import derive, fit_metadata
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from api import create_app
from forecasting.registry import Registry
from forecasting.services.setup import initialise
from forecasting.settings import RateLimits, load_settings
from forecasting.store import connect
from forecasting.store.schema import episode_revisions, refit_jobs

ROOT = Path(__file__).resolve().parent.parent


def scrape(client, **kwargs) -> dict:
    """{(sample name, ((label, value), ...)): value} of one GET /metrics."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    return parse(response.get_data(as_text=True))


def parse(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _app(settings):
    app = create_app({"SETTINGS": settings, "TESTING": True})
    return app


@pytest.fixture
def make_client(api_settings):
    """A client of an app built from api_settings with `changes` (closed apps afterwards)."""
    apps = []

    def make(**changes):
        app = _app(replace(api_settings, **changes))
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["forecasting"].database.dispose()


def test_requests_are_counted_by_route_rule_method_and_status(client):
    for version in ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"):
        assert client.get(f"/v1/models/{version}").status_code == 404
    assert client.get("/health").status_code == 200
    assert client.get("/no/such/path/123").status_code == 404
    samples = scrape(client)
    count = "flask_http_request_duration_seconds_count"
    assert value(samples, count, method="GET", route="/v1/models/<version>", status="404") == 3
    assert value(samples, count, method="GET", route="/health", status="200") == 1
    assert value(samples, count, method="GET", route="unmatched", status="404") == 1
    # one series per rule: the versions asked for, and paths no rule matched, make no labels
    labels = " ".join(str(key[1]) for key in samples)
    assert "aaaaaaaaaaaa" not in labels and "/no/such/path" not in labels
    assert value(samples, "flask_http_request_duration_seconds_bucket", method="GET",
                 route="/health", status="200", le="+Inf") == 1


def test_failed_authentications_are_counted_by_status_without_token_names(client, tokens):
    assert client.post("/v1/episodes", json=[]).status_code == 401
    assert client.post("/v1/episodes", json=[], headers=auth("not-a-token")).status_code == 401
    assert client.post("/v1/episodes", json=[],
                       headers=auth(tokens["reader"])).status_code == 403
    text = client.get("/metrics").get_data(as_text=True)
    samples = parse(text)
    assert value(samples, "forecast_auth_failures_total", status="401",
                 route="/v1/episodes") == 2
    assert value(samples, "forecast_auth_failures_total", status="403",
                 route="/v1/episodes") == 1
    assert "reader-token" not in text and tokens["reader"] not in text


def test_rate_limited_requests_are_counted(make_client):
    client = make_client(rate_limits=RateLimits(reads="2/minute"))
    statuses = [client.get("/health").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    # another address: the scrape has a rate budget of its own
    samples = scrape(client, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert value(samples, "forecast_rate_limited_total", route="/health") == 1
    assert value(samples, "flask_http_request_total", method="GET", status="429") == 1


def test_metrics_need_a_token_when_reads_are_closed(make_client, tokens):
    client = make_client(open_reads=False)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth(tokens["reader"])).status_code == 200


def test_metrics_can_be_turned_off(make_client):
    assert make_client(metrics=False).get("/metrics").status_code == 404


def _jobs(database, *outcomes: str) -> list[int]:
    """One refit per outcome, run to its end (None: left running); then one more queued."""
    ids = []
    for outcome in outcomes:
        job, _ = database.refits.request("manual", "tester", 0)
        assert database.refits.claim(job["id"], "test-worker", 60) == "claimed"
        if outcome is not None:
            database.refits.finish(job["id"], outcome)
        ids.append(job["id"])
    ids.append(database.refits.request("episodes", "tester", 0)[0]["id"])
    return ids


def test_refit_outcomes_durations_and_queue_depth_come_from_the_database(client, api_settings):
    database = connect(api_settings.database_url)
    try:
        first, second, third, *_ = _jobs(database, "succeeded", "succeeded", "failed", None)
        with database.refits.engine.begin() as conn:  # as if they had taken 90 s and 20 min
            for job_id, seconds in ((first, 90), (second, 1200), (third, 45)):
                row = database.refits.get(job_id)
                finished = dt.datetime.fromisoformat(row["finished_at"])
                conn.execute(update(refit_jobs).where(refit_jobs.c.id == job_id).values(
                    started_at=finished - dt.timedelta(seconds=seconds)))
    finally:
        database.dispose()
    samples = scrape(client)
    assert value(samples, "forecast_refit_jobs", status="queued") == 1
    assert value(samples, "forecast_refit_jobs", status="running") == 1
    assert value(samples, "forecast_refits_total", status="succeeded") == 2
    assert value(samples, "forecast_refits_total", status="failed") == 1
    assert value(samples, "forecast_refits_total", status="error") == 0
    duration = "forecast_refit_duration_seconds"
    assert value(samples, f"{duration}_count", status="succeeded") == 2
    assert value(samples, f"{duration}_sum", status="succeeded") == pytest.approx(1290, abs=1)
    assert value(samples, f"{duration}_bucket", status="succeeded", le="120.0") == 1
    assert value(samples, f"{duration}_bucket", status="succeeded", le="1200.0") == 2
    assert value(samples, f"{duration}_bucket", status="failed", le="60.0") == 1
    assert value(samples, "forecast_refit_last_finished_timestamp_seconds",
                 status="succeeded") == pytest.approx(time.time(), abs=120)

    # the running one ends in an error: the next scrape sees it (finished rows are cached)
    database = connect(api_settings.database_url)
    running = database.refits.active()[0]
    assert running["status"] == "running"
    database.refits.finish(running["id"], "error")
    database.dispose()
    samples = scrape(client)
    assert value(samples, "forecast_refit_jobs", status="running") == 0
    assert value(samples, "forecast_refits_total", status="error") == 1
    assert value(samples, "forecast_refits_total", status="succeeded") == 2
    assert value(samples, f"{duration}_count", status="error") == 1


@pytest.fixture
def current_model(api_settings, fitted_version, fitted_posterior):
    """A passing version made current, fitted two days ago on this instance's episodes but the
    last revision."""
    database = connect(api_settings.database_url)
    latest = database.episodes.latest_revision_id()
    database.dispose()
    fitted_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    tree, meta = derive(fitted_posterior, fit_metadata(fitted_version), data_hash="data-metrics",
                        prior_set_id=None, store_revision=latest, fitted_at=fitted_at.isoformat())
    registry = Registry(api_settings.registry_path)
    return registry.promote(registry.save(tree, meta).version)


def test_model_age_and_staleness_are_read_at_scrape_time(client, api_settings, current_model):
    samples = scrape(client)
    assert value(samples, "forecast_model_info", version=current_model.version) == 1
    assert value(samples, "forecast_model_age_seconds") == pytest.approx(2 * 86400, abs=120)
    assert value(samples, "forecast_model_stale") == 0
    assert value(samples, "forecast_model_stale_seconds") == 0

    # an episode revised an hour ago that the model has not seen: stale for an hour
    database = connect(api_settings.database_url)
    try:
        with database.episodes.engine.begin() as conn:
            latest = database.episodes.latest_revision_id()
            conn.execute(update(episode_revisions).where(episode_revisions.c.id == latest)
                         .values(changed_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
        registry = Registry(api_settings.registry_path)
        tree, meta = derive(registry.load_posterior(current_model.version, groups=["posterior"]),
                            fit_metadata(current_model), data_hash="data-metrics-older",
                            store_revision=latest - 1)
        older = registry.promote(registry.save(tree, meta).version)
    finally:
        database.dispose()
    samples = scrape(client)
    assert value(samples, "forecast_model_info", version=older.version) == 1
    assert value(samples, "forecast_model_stale") == 1
    assert value(samples, "forecast_model_stale_seconds") == pytest.approx(3600, abs=120)


def test_no_current_model_is_stale_with_no_age(client):
    samples = scrape(client)
    assert value(samples, "forecast_model_stale") == 1
    assert value(samples, "forecast_model_age_seconds") is None
    assert value(samples, "forecast_state_readable") == 1


# -- under gunicorn: several workers, one sum ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers: dict | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _json_lines(path: Path) -> list[dict]:
    """The finished lines of a log another process is writing: a line read while it is
    being written has no newline yet and is left for the next read."""
    finished = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in finished if line.strip()]


@pytest.fixture
def gunicorn_server(tmp_path):
    """`forecast serve --workers 2` on a fresh instance with JSON logs: (base URL, stdout
    file, stderr file, process)."""
    folder = tmp_path / "instance"
    initialise(load_settings({"FORECAST_INSTANCE": str(folder)})).dispose()
    (folder / "metrics").mkdir()
    (folder / "metrics" / "counter_1.db").write_bytes(b"a previous run's")  # to be emptied
    port = _free_port()
    env = {**os.environ, "FORECAST_INSTANCE": str(folder), "FORECAST_LOG_FORMAT": "json",
           "FORECAST_RATE_LIMIT": "0"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "forecasting.cli", "serve", "--port", str(port),
             "--workers", "2"], cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120  # a loaded machine imports slowly
        while True:
            try:
                if _get(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, err.read_text()
            assert time.time() < deadline, "the server did not answer within 120 s"
            time.sleep(0.5)
        yield base, out, err, process
    finally:
        process.send_signal(signal.SIGINT)  # a quick shutdown: no request is left to finish
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _served_by(out: Path, path: str) -> set[int]:
    return {line["process"] for line in _json_lines(out) if line.get("path") == path}


def _health_count(base: str) -> float | None:
    status, text = _get(f"{base}/metrics")
    assert status == 200
    return value(parse(text), "flask_http_request_duration_seconds_count", method="GET",
                 route="/health", status="200")


def test_every_worker_answers_the_sum_over_workers_and_logs_json(gunicorn_server, tmp_path):
    base, out, err, process = gunicorn_server
    sent = 1  # the readiness check's
    with ThreadPoolExecutor(8) as pool:
        while len(_served_by(out, "/health")) < 2 and sent < 400:  # until both have served
            assert all(s == 200 for s, _ in pool.map(_get, [f"{base}/health"] * 20))
            sent += 20
    workers = _served_by(out, "/health")
    assert len(workers) == 2, "the requests all went to one worker"
    assert not (tmp_path / "instance" / "metrics" / "counter_1.db").exists()
    counts = {_health_count(base) for _ in range(6)}
    assert counts == {sent}, "a worker's /metrics must show every worker's requests"
    assert len(_served_by(out, "/metrics")) >= 1
    assert {p.name.rsplit("_", 1)[-1] for p in (tmp_path / "instance" / "metrics").glob(
        "counter_*.db")} >= {f"{pid}.db" for pid in workers}

    # a worker killed: gunicorn starts another, and the dead one's requests stay counted
    os.kill(next(iter(workers)), signal.SIGKILL)
    deadline = time.time() + 90
    while sum("Booting worker" in line.get("message", "") for line in _json_lines(err)) < 3:
        assert time.time() < deadline, "gunicorn did not replace the killed worker"
        time.sleep(0.5)
    assert {_health_count(base) for _ in range(4)} == {sent}

    # every line gunicorn and the app wrote is one JSON object (access and error logs)
    access = [line for line in _json_lines(out) if line["logger"] == "gunicorn.access"]
    assert access and all({"time", "level", "logger", "message", "request_id", "status",
                           "method", "path", "duration_ms"} <= line.keys() for line in access)
    errors = _json_lines(err)
    assert {"gunicorn.error"} <= {line["logger"] for line in errors}
    status, _ = _get(f"{base}/v1/models/nothing-here", headers={"X-Request-ID": "trace-42"})
    assert status == 404
    request = urllib.request.Request(f"{base}/v1/episodes", data=b"[]", method="POST",
                                     headers={"X-Request-ID": "trace-43",
                                              "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    refused.value.close()
    assert refused.value.code == 401 and refused.value.headers["X-Request-ID"] == "trace-43"
    time.sleep(0.5)
    assert any(line.get("request_id") == "trace-42" and line.get("status") == 404
               for line in _json_lines(out))
    # the app's own records carry the request's id and route
    assert any(line["logger"] == "forecasting.auth" and line.get("request_id") == "trace-43"
               and line.get("route") == "/v1/episodes" for line in _json_lines(err))
