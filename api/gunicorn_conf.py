"""gunicorn as `forecast serve` and `forecast run` start it: the options of api/serving.py, plus
metrics summed over the workers, logs in FORECAST_LOG_FORMAT and a request id on every request.

The serving command sets PROMETHEUS_MULTIPROC_DIR (a folder in the instance, emptied at start)
before this module is imported; `child_exit` tells prometheus_client a worker has gone, so its
live gauges are dropped while its counts stay in the totals.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from typing import Any

from flask import has_request_context, request
from gunicorn import glogging

from forecasting.logs import JsonFormatter, configure_logging
from forecasting.settings import Settings

from .serving import _Gunicorn, banner, gunicorn_options

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_ID_HEADER = "X-Request-ID"
# a caller's own id is kept when it is a plain token (a proxy's, a client's trace id), else
# replaced: nothing a caller sends can break a log line
_CALLERS_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ACCESS_TEXT_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms %({x-request-id}o)s'


class RequestIds:
    """WSGI middleware: every request gets an id (X-Request-ID), seen by the app's log records
    and sent back in the response's X-Request-ID header, which the access log records."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        given = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _CALLERS_ID.fullmatch(given) else uuid.uuid4().hex
        environ["HTTP_X_REQUEST_ID"] = request_id

        def start(status, headers, exc_info=None):
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            return start_response(status, [*headers, (REQUEST_ID_HEADER, request_id)], exc_info)

        return self.app(environ, start)


class RequestContextFilter(logging.Filter):
    """Adds request_id and route (the URL rule, e.g. /v1/models/<version>) to a record logged
    while a request is handled; a JSON line shows them as fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            request_id = request.headers.get(REQUEST_ID_HEADER)
            if request_id:
                record.request_id = request_id
            if request.url_rule is not None:
                record.route = request.url_rule.rule
        return True


class AccessJsonFormatter(JsonFormatter):
    """gunicorn's access line as fields: the record's args are gunicorn's atoms."""

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        super().add_fields(log_data, record, message_dict)
        atoms = record.args
        if not isinstance(atoms, dict):
            return
        status = str(atoms.get("s", ""))
        log_data.update({
            "remote": atoms.get("h"), "method": atoms.get("m"), "path": atoms.get("U"),
            "query": atoms.get("q") or None,
            "status": int(status) if status.isdigit() else status,
            "bytes": atoms.get("B"), "duration_ms": atoms.get("M"),
            "request_id": atoms.get("{x-request-id}o"), "user_agent": atoms.get("a"),
        })


class StructuredLogger(glogging.Logger):
    """gunicorn's logger, in `log_format`: its error and access logs, and the root logger (the
    app's records, with request id and route) to standard error."""

    log_format = "text"

    def setup(self, cfg) -> None:
        super().setup(cfg)
        if self.log_format == "json":
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())
            for handler in self.access_log.handlers:
                handler.setFormatter(AccessJsonFormatter())
        configure_logging(self.log_format, level=self.loglevel, filters=[RequestContextFilter()])


def logger_class(log_format: str) -> type[StructuredLogger]:
    return type("StructuredLogger", (StructuredLogger,), {"log_format": log_format})


def child_exit(server, worker) -> None:
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def options(settings: Settings, host: str, port: int, workers: int) -> dict[str, Any]:
    return {**gunicorn_options(host, port, workers),
            "access_log_format": ACCESS_TEXT_FORMAT,
            "logger_class": logger_class(settings.log_format),
            "child_exit": child_exit}


class _Server(_Gunicorn):
    def load(self):
        return RequestIds(super().load())


def serve_api(settings: Settings, host: str, port: int, workers: int) -> None:
    if settings.log_format == "text":  # in JSON, every line must be an object; gunicorn logs
        print(banner(host, port), flush=True)  # where it listens
    _Server(settings, options(settings, host, port, workers)).run()
