"""Serving commands: serve (the API), worker (refits), run (both, as `make run`), refits."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click
from rich.table import Table

from forecasting.cli import CliContext, echo_json, err, fail, main, out, pass_context, print_stats
from forecasting.cli.models import FIT_FAILED_GATE
from forecasting.logs import configure_logging
from forecasting.services.setup import initialise, seed_if_empty
from forecasting.settings import Settings

THIS_COMMAND = [sys.executable, "-m", "forecasting.cli"]
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger(__name__)


def metrics_folder(settings: Settings) -> Path | None:
    """Where the web workers write their metrics (PROMETHEUS_MULTIPROC_DIR), emptied of
    prometheus_client's files (*.db): a previous run's counts would otherwise be added to this
    one's. Set here, before anything imports prometheus_client, which reads it once; None when
    FORECAST_METRICS=0."""
    if not settings.metrics:
        return None
    folder = Path(os.environ.get(MULTIPROC_ENV) or settings.instance_path / "metrics")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):  # only its own files: the folder may be the operator's
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def _queue_name(settings: Settings) -> str:
    """The queue, for a log line: a Redis URL without its user and password."""
    if not settings.queue_url:
        return str(settings.instance_path / "queue.sqlite3")
    url = urlsplit(settings.queue_url)
    return urlunsplit(url._replace(netloc=url.netloc.rpartition("@")[2]))


def _serve(settings: Settings, host: str, port: int, workers: int) -> None:
    metrics_folder(settings)
    from api.gunicorn_conf import serve_api

    serve_api(settings, host, port, workers)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=int, show_default=True)
@click.option("--workers", default=2, type=int, show_default=True)
@pass_context
def serve(ctx: CliContext, host: str, port: int, workers: int) -> None:
    """Serve the API with gunicorn (no refit worker)."""
    ctx.database()  # refuse to start on an uninitialised database
    _serve(ctx.settings, host, port, workers)


@main.command()
@click.option("--threads", default=1, type=int, show_default=True,
              help="Consumer threads; refits still run one at a time.")
@pass_context
def worker(ctx: CliContext, threads: int) -> None:
    """Run the refit worker: fits queued refits, gates them, promotes the ones that pass."""
    from forecasting.model.sampling import warm_up
    from forecasting.services.priors import active_priors

    # a long-running process: its records (huey's, the refits') in FORECAST_LOG_FORMAT
    configure_logging(ctx.settings.log_format)
    database = ctx.database()
    service = ctx.refits()
    requeued = service.sweep()  # jobs of a worker that died are picked up again
    where = _queue_name(ctx.settings)
    log.info("refit worker on %s%s", where, f"; requeued {requeued}" if requeued else "")
    # compile now, so that the first refit does not pay it (~35 s)
    seconds = warm_up(database.episodes.frame(), ctx.codebook,
                      active_priors(database, ctx.settings)[0], ctx.settings.sampler)
    log.info("model compiled in %.0f s; waiting for refits", seconds)
    service.consumer(workers=threads).run()


@main.command()
@click.option("--limit", default=20, type=int, show_default=True)
@click.option("--now", "request_now", is_flag=True,
              help="Queue a refit now (coalesces with one already queued).")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def refits(ctx: CliContext, limit: int, request_now: bool, as_json: bool) -> None:
    """Show whether the current model is stale, and the queued, running and past refits."""
    from forecasting.refits import model_status

    database = ctx.database()
    if request_now:
        job = ctx.refits().request("manual", ctx.actor, delay=0)
        err.print(f"refit {job['id']} queued")
    status = model_status(database, ctx.registry)
    history = database.refits.list(limit=limit)
    if as_json:
        echo_json({**status, "history": history})
        return
    state = (f"[red]stale[/] since {status['stale_since']} ({'; '.join(status['stale_reasons'])})"
             if status["stale"] else "[green]up to date[/]")
    out.print(f"current model: {status['current_version']} - {state}")
    table = Table("id", "status", "reason", "by", "requested", "duration s", "version",
                  "verdict", "promoted", "episodes", "detail")
    for job in history:
        detail = job["detail"].get("reasons") or job["detail"].get("error") or \
            job["detail"].get("note") or ""
        table.add_row(str(job["id"]), job["status"], job["reason"], job["requested_by"],
                      job["requested_at"][:19], f"{job['duration_s']:.0f}"
                      if job["duration_s"] is not None else "", job["version"] or "",
                      job["verdict"] or "", "" if job["promoted"] is None else str(job["promoted"]),
                      "" if job["episodes"] is None else str(job["episodes"]), str(detail))
    out.print(table)


def _prepare(ctx: CliContext) -> None:
    """Initialise, seed an empty database, fit and promote if no version is current.

    The fit runs as `forecast fit` in a child process: the web workers are forked from
    this one, and must not inherit the sampler's threads, compiled code and memory.
    """
    database = initialise(ctx.settings)
    summary = seed_if_empty(database, ctx.settings)
    if summary is not None:
        out.print(f"imported {summary.inserted} seed episodes from "
                  f"{ctx.settings.seed_episodes_path}")
    print_stats(database)
    database.dispose()
    registry = ctx.registry
    if registry.current_or_none() is None:
        s = ctx.settings.sampler
        out.print(f"no current model: fitting ({s.sampler}, {s.chains} chains x {s.draws} "
                  "draws); this takes a minute or two the first time ...")
        fitted = subprocess.run([*THIS_COMMAND, "fit"])
        if fitted.returncode == FIT_FAILED_GATE:
            fail("the fit failed its diagnostics gate, so there is no model to serve; "
                 "see the reasons above")
        if fitted.returncode != 0 or registry.current_or_none() is None:
            fail(f"the fit stopped with exit code {fitted.returncode}, so there is no model "
                 "to serve; see the errors above")
    else:
        out.print(f"current model: {registry.current().version}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=int, show_default=True)
@click.option("--workers", default=2, type=int, show_default=True, help="Web workers.")
@pass_context
def run(ctx: CliContext, host: str, port: int, workers: int) -> None:
    """Initialise, import the seed data if empty, fit if no model is current, then serve
    the API and one refit worker until Ctrl-C."""
    _prepare(ctx)
    refit_worker = subprocess.Popen([*THIS_COMMAND, "worker"])
    parent = os.getpid()

    def stop_worker():
        if os.getpid() != parent:  # a forked web worker unwinding: not ours to stop
            return
        refit_worker.terminate()
        try:
            refit_worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            refit_worker.kill()
        err.print("stopped the API and the refit worker")

    try:
        _serve(ctx.settings, host, port, workers)
    except BaseException:
        stop_worker()
        raise
    stop_worker()
