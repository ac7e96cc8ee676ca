"""How the long-running processes log: text (the default) or JSON, one object per line.

FORECAST_LOG_FORMAT picks the format. The web app under gunicorn (api/gunicorn_conf.py) and the
refit worker (`forecast worker`) call `configure_logging` once at start; library modules only
ask for their logger (`logging.getLogger(__name__)`). A JSON line holds time (UTC, ISO 8601),
level, logger, process and message, then every extra field of the record (the web app adds
request_id and route) and, for an exception, its traceback as one string.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Iterable
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"


class JsonFormatter(_JsonFormatter):
    """A record as one JSON object (python-json-logger), with short, stable key names."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                         rename_fields={"asctime": "time", "levelname": "level",
                                        "name": "logger"})

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # UTC and ISO 8601 whatever the machine's time zone: log shippers parse it as is
        return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"Requested log format '{log_format}' but it must be one of "
                     f"{list(LOG_FORMATS)}")


def configure_logging(log_format: str, *, level: int = logging.INFO, stream: TextIO | None = None,
                      filters: Iterable[logging.Filter] = ()) -> logging.Handler:
    """Send every record of level `level` or above to `stream` (standard error) in `log_format`.

    The root logger's handlers are replaced, so that a handler installed earlier (the CLI's
    basicConfig) does not print each record a second time in another format.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    for log_filter in filters:
        handler.addFilter(log_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
