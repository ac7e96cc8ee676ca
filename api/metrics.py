"""GET /metrics: Prometheus metrics of the requests, the refits and the served model.

Request metrics are counted in each web process by prometheus-flask-exporter; under gunicorn
(`forecast serve`, `forecast run`) PROMETHEUS_MULTIPROC_DIR is set, every worker writes its
counts there and any worker's /metrics sums them all. Refits, the queue and the model are not
counted by anyone: `StateCollector` reads them from the database and the registry at each
scrape, so every web worker answers the same and the refit worker's work (which writes only
there) is seen. Labels hold the route's rule (`/v1/models/<version>`), never the raw path, a
token name or a file path. docs/operations.md ("Metrics and logs") lists every metric.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

from flask import Flask, Request, Response, request
from prometheus_client import CollectorRegistry, Counter, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString
from prometheus_flask_exporter import PrometheusMetrics
from sqlalchemy import select

from forecasting.refits import model_status
from forecasting.registry import Registry
from forecasting.settings import Settings
from forecasting.store import Database
from forecasting.store.refits import FINAL
from forecasting.store.schema import refit_jobs

from .auth import authenticated

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"  # the route label of a request no rule matched (404, 405)
# request latencies: most reads take milliseconds, a compare or a plot up to seconds
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# refits take minutes (a seed-scale fit about one): up to two hours
REFIT_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def route(req: Request) -> str:
    """The label of a request: its URL rule, so that /v1/models/<version> is one series."""
    return req.url_rule.rule if req.url_rule is not None else UNMATCHED


def _seconds_since(iso: str | None, now: float) -> float | None:
    if not iso:
        return None
    return max(now - dt.datetime.fromisoformat(iso).timestamp(), 0.0)


class StateCollector:
    """Refits, queue depth and the served model's age and staleness, read at scrape time."""

    def __init__(self, database: Database, registry: Registry,
                 clock: Callable[[], float] = time.time):
        self.database, self.registry, self.clock = database, registry, clock
        self._finished: dict[int, tuple[str, float | None, float | None]] = {}
        self._lock = threading.Lock()  # gthread workers may answer two scrapes at once

    def collect(self) -> Iterator:
        now = self.clock()
        readable = GaugeMetricFamily(
            "forecast_state_readable",
            "1 when this scrape could read the database and the model registry, else 0")
        try:
            # staleness as `forecast refits` and GET /v1/refits state it, not derived again here
            status = model_status(self.database, self.registry)
            finished = self._finished_refits()
        except Exception:  # a scrape must answer, and say what it could not read
            log.warning("metrics could not read the database or the registry", exc_info=True)
            readable.add_metric([], 0)
            yield readable
            return
        readable.add_metric([], 1)
        yield readable
        yield from self._queue(status)
        yield from self._refits(finished)
        yield from self._model(status, now)

    def _finished_refits(self) -> list[tuple[str, float | None, float | None]]:
        """(status, seconds taken, finished at) of every finished refit. A finished row never
        changes, so each is read once per process and a scrape reads only the ids."""
        ids_query = select(refit_jobs.c.id).where(refit_jobs.c.status.in_(FINAL))
        with self._lock, self.database.refits.engine.connect() as conn:
            ids = set(conn.execute(ids_query).scalars())
            new = sorted(ids - self._finished.keys())
            for start in range(0, len(new), 500):
                rows = conn.execute(select(
                    refit_jobs.c.id, refit_jobs.c.status, refit_jobs.c.started_at,
                    refit_jobs.c.finished_at).where(refit_jobs.c.id.in_(new[start:start + 500])))
                for job_id, status, started, finished in rows:
                    self._finished[job_id] = (
                        status,
                        (finished - started).total_seconds() if started and finished else None,
                        finished.timestamp() if finished else None)
            for gone in self._finished.keys() - ids:
                del self._finished[gone]
            return list(self._finished.values())

    @staticmethod
    def _queue(status: dict) -> Iterator:
        jobs = GaugeMetricFamily("forecast_refit_jobs", "Refit jobs queued or running (at most "
                                 "one of each: requests coalesce)", labels=["status"])
        for state in ("queued", "running"):
            jobs.add_metric([state], len(status[state]))
        yield jobs

    @staticmethod
    def _refits(finished: list) -> Iterator:
        outcomes = CounterMetricFamily("forecast_refits", "Refits finished, by outcome",
                                       labels=["status"])
        durations = HistogramMetricFamily(
            "forecast_refit_duration_seconds",
            "Time from a worker claiming a refit to its end, by outcome", labels=["status"])
        last = GaugeMetricFamily("forecast_refit_last_finished_timestamp_seconds",
                                 "When the last refit of each outcome finished (Unix time)",
                                 labels=["status"])
        for outcome in FINAL:
            mine = [row for row in finished if row[0] == outcome]
            outcomes.add_metric([outcome], len(mine))
            taken = [seconds for _, seconds, _ in mine if seconds is not None]
            per_bucket = [0] * len(REFIT_BUCKETS)
            for seconds in taken:  # the first bucket whose bound is at least the duration
                index = bisect.bisect_left(REFIT_BUCKETS, seconds)
                if index < len(REFIT_BUCKETS):
                    per_bucket[index] += 1
            buckets = [(floatToGoString(bound), count) for bound, count in
                       zip(REFIT_BUCKETS, itertools.accumulate(per_bucket), strict=True)]
            durations.add_metric([outcome], buckets + [("+Inf", len(taken))],
                                 sum_value=sum(taken))
            ends = [end for *_, end in mine if end is not None]
            if ends:
                last.add_metric([outcome], max(ends))
        yield outcomes
        yield durations
        yield last

    @staticmethod
    def _model(status: dict, now: float) -> Iterator:
        stale = GaugeMetricFamily("forecast_model_stale", "1 when the current model misses "
                                  "episode or prior changes (or no model is current), else 0")
        stale.add_metric([], int(status["stale"]))
        yield stale
        if status["current_version"] is None:
            return
        info = GaugeMetricFamily("forecast_model_info", "The version served (always 1)",
                                 labels=["version"])
        info.add_metric([status["current_version"]], 1)
        yield info
        age = GaugeMetricFamily("forecast_model_age_seconds",
                                "Seconds since the current version was fitted")
        age.add_metric([], _seconds_since(status["current_fitted_at"], now) or 0.0)
        yield age
        stale_for = GaugeMetricFamily(
            "forecast_model_stale_seconds",
            "Seconds since the first change the current model does not reflect (0 when it "
            "reflects every change)")
        since = _seconds_since(status["stale_since"], now) if status["stale"] else None
        stale_for.add_metric([], since or 0.0)
        yield stale_for


def init_metrics(app: Flask, settings: Settings) -> None:
    """Count the app's requests and serve GET /metrics (a token is needed when reads are
    closed, FORECAST_OPEN_READS=0)."""
    if multiprocess() and values.ValueClass is values.MutexValue:
        # each worker would count for itself and /metrics would show one worker's share
        raise RuntimeError(f"{MULTIPROC_ENV} was set after prometheus_client was imported: "
                           "set it before the web app is imported (forecast serve does)")
    services = app.extensions["forecasting"]
    # one registry per app: tests build many apps in one process
    registry = CollectorRegistry()
    exporter = PrometheusMetrics(app, path=None, registry=registry, group_by=route,
                                 buckets=REQUEST_BUCKETS)
    auth_failures = Counter("forecast_auth_failures", "Requests refused for a missing, unknown, "
                            "revoked or expired token (401) or a role that may not (403)",
                            ["status", "route"], registry=registry)
    rate_limited = Counter("forecast_rate_limited", "Requests refused by a rate limit (429)",
                           ["route"], registry=registry)
    state = StateCollector(services.database, services.registry)
    if not multiprocess():
        registry.register(state)

    @app.after_request
    def count_refusals(response: Response) -> Response:
        if response.status_code in (401, 403):
            auth_failures.labels(str(response.status_code), route(request)).inc()
        elif response.status_code == 429:
            rate_limited.labels(route(request)).inc()
        return response

    @app.get("/metrics", doc_ui=False)
    @exporter.do_not_track()
    def metrics():
        if not settings.open_reads:
            authenticated()
        if multiprocess():  # every worker's counts, from the files they write
            scraped = CollectorRegistry()
            MultiProcessCollector(scraped)
            scraped.register(state)
        else:
            scraped = registry
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(encode(scraped), content_type=content_type,
                        headers={"Cache-Control": "no-store"})
