"""Logs by FORECAST_LOG_FORMAT: text by default, JSON one object per line, request ids."""

import datetime as dt
import io
import json
import logging
import sys
import types
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from flask import Flask
from gunicorn.config import Config

from api.gunicorn_conf import RequestContextFilter, RequestIds, logger_class
from forecasting.cli import main
from forecasting.logs import configure_logging
from forecasting.services.setup import initialise
from forecasting.settings import load_settings

REQUIRED = {"time", "level", "logger", "message"}


@pytest.fixture(autouse=True)
def root_logging():
    """configure_logging replaces the root logger's handlers: put them back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def json_lines(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # each line one object, or this raises


def test_json_records_are_one_object_per_line_even_with_tracebacks_and_newlines():
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    log = logging.getLogger("forecasting.example")
    log.info("refit %s queued", 7, extra={"job": 7})
    log.warning("a message\nover two lines")
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("refit %s raised", 7)
    logging.getLogger("forecasting.example").debug("below the level: not written")
    records = json_lines(stream.getvalue())
    assert len(records) == 3
    assert all(r.keys() >= REQUIRED for r in records)
    assert [r["level"] for r in records] == ["INFO", "WARNING", "ERROR"]
    assert records[0]["message"] == "refit 7 queued" and records[0]["job"] == 7
    assert records[0]["logger"] == "forecasting.example"
    assert records[1]["message"] == "a message\nover two lines"
    assert "ValueError: bad value" in records[2]["exc_info"]
    stamp = dt.datetime.fromisoformat(records[0]["time"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 60


def test_text_is_the_default_and_other_formats_are_refused():
    assert load_settings({}).log_format == "text"
    stream = io.StringIO()
    configure_logging("text", stream=stream)
    logging.getLogger("forecasting.example").info("plain words")
    line = stream.getvalue().strip()
    assert line.endswith("[INFO] forecasting.example: plain words")
    with pytest.raises(ValueError, match="FORECAST_LOG_FORMAT='xml' must be text or json"):
        load_settings({"FORECAST_LOG_FORMAT": "xml"})
    with pytest.raises(ValueError, match=r"Requested log format 'xml' but it must be one of "):
        configure_logging("xml")


def test_configuring_twice_does_not_write_each_record_twice():
    first, second = io.StringIO(), io.StringIO()
    logging.basicConfig()  # as the CLI does before a command runs
    configure_logging("json", stream=first)
    configure_logging("json", stream=second)
    logging.getLogger("forecasting.example").info("once")
    assert first.getvalue() == "" and len(json_lines(second.getvalue())) == 1


@pytest.fixture
def tiny_app():
    """A Flask app that logs in a view, behind the request-id middleware."""
    app = Flask(__name__)

    @app.get("/v1/things/<name>")
    def thing(name):
        logging.getLogger("api.example").warning("looked up %s", name)
        return {"name": name}

    app.wsgi_app = RequestIds(app.wsgi_app)
    return app


def test_app_records_carry_the_request_id_and_the_route_rule(tiny_app):
    stream = io.StringIO()
    configure_logging("json", stream=stream, filters=[RequestContextFilter()])
    response = tiny_app.test_client().get("/v1/things/abc", headers={"X-Request-ID": "trace-1"})
    assert response.headers["X-Request-ID"] == "trace-1"
    logging.getLogger("forecasting.example").info("outside any request")
    inside, outside = json_lines(stream.getvalue())
    assert inside["request_id"] == "trace-1" and inside["route"] == "/v1/things/<name>"
    assert inside["message"] == "looked up abc"
    assert "request_id" not in outside and "route" not in outside


@pytest.mark.parametrize("given", [None, "", "two words", "x" * 200, "quoted\"id{x}"])
def test_a_request_without_a_usable_id_gets_a_new_one(tiny_app, given):
    headers = {} if given is None else {"X-Request-ID": given}
    client = tiny_app.test_client()
    first = client.get("/v1/things/a", headers=headers).headers.getlist("X-Request-ID")
    second = client.get("/v1/things/a", headers=headers).headers.getlist("X-Request-ID")
    assert len(first) == 1 and len(first[0]) == 32 and first[0].isalnum()
    assert first != second and first[0] != given


def test_gunicorn_access_lines_are_json_objects_with_the_request_fields(capsys):
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", '%(h)s "%(r)s" %(s)s')
    logger = logger_class("json")(cfg)
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/v1/models?x=1", "PATH_INFO": "/v1/models",
               "QUERY_STRING": "x=1", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.1.2.3",
               "HTTP_USER_AGENT": "probe/1"}
    response = SimpleNamespace(status="200 OK", sent=512,
                               headers=[("Content-Type", "application/json"),
                                        ("X-Request-ID", "req-9")])
    request = SimpleNamespace(headers=[("User-Agent", "probe/1")])
    logger.access(response, request, environ, dt.timedelta(milliseconds=42))
    (line,) = json_lines(capsys.readouterr().out)
    assert line.keys() >= REQUIRED and line["logger"] == "gunicorn.access"
    assert line["message"] == '10.1.2.3 "GET /v1/models?x=1 HTTP/1.1" 200'
    assert {k: line[k] for k in ("method", "path", "query", "status", "bytes", "duration_ms",
                                 "request_id", "remote")} == {
        "method": "GET", "path": "/v1/models", "query": "x=1", "status": 200, "bytes": 512,
        "duration_ms": 42, "request_id": "req-9", "remote": "10.1.2.3"}


def test_the_refit_worker_logs_json_when_asked(tmp_path, monkeypatch):
    folder = tmp_path / "instance"
    initialise(load_settings({"FORECAST_INSTANCE": str(folder)})).dispose()
    # stand-ins for compiling the model and for huey's loop (its consumer logs as it starts)
    sampling = types.ModuleType("forecasting.model.sampling")
    sampling.warm_up = lambda *args, **kwargs: 1.0
    monkeypatch.setitem(sys.modules, "forecasting.model.sampling", sampling)
    consumer = SimpleNamespace(run=lambda: logging.getLogger("huey.consumer").info("started"))
    monkeypatch.setattr("forecasting.refits.RefitService.consumer",
                        lambda self, workers=1: consumer)
    result = CliRunner().invoke(main, ["worker"], env={
        "FORECAST_INSTANCE": str(folder), "FORECAST_LOG_FORMAT": "json",
        "FORECAST_QUEUE_URL": "redis://user:secret@127.0.0.1:6379/0"})
    assert result.exit_code == 0, result.output
    records = json_lines(result.stderr)
    messages = [r["message"] for r in records]
    assert "refit worker on redis://127.0.0.1:6379/0" in messages  # no password in a log
    assert "model compiled in 1 s; waiting for refits" in messages
    assert {"logger": "huey.consumer", "message": "started"}.items() <= records[-1].items()
    assert all(r.keys() >= REQUIRED for r in records)
