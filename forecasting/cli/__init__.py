"""The `forecast` console script: parses arguments, calls library code, prints results.

No domain logic lives here: every command is a thin face over a library function
that the API calls too.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from forecasting.domain.codebook import load_codebook
from forecasting.domain.episodes import EpisodeValidationError
from forecasting.domain.interchange import FORMATS, format_of, write_rows
from forecasting.services import setup as bootstrap
from forecasting.settings import load_settings
from forecasting.store import EpisodeFilter
from forecasting.store.db import SchemaOutOfDateError
from forecasting.store.tokens import ROLES, TokenError

FIT_FAILED_GATE = 3  # exit code of `forecast fit` when the gate fails
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


class CliContext:
    """Settings and lazily opened resources, shared by the subcommands."""

    def __init__(self):
        self.settings = load_settings()
        self._codebook = None

    @property
    def codebook(self):
        if self._codebook is None:
            self._codebook = load_codebook(self.settings.codebook_path)
        return self._codebook

    def database(self):
        database = bootstrap.open_database(self.settings)
        try:
            database.ensure_current()
        except SchemaOutOfDateError as exc:
            _fail(str(exc))
        return database


pass_context = click.make_pass_decorator(CliContext, ensure=True)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(1)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log progress of library code.")
def main(verbose: bool) -> None:
    """Forecasts of partners restricting intelligence shared with the US.

    The database and model registry live under $FORECAST_INSTANCE (default ./instance);
    see the README for every setting.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@pass_context
def init(ctx: CliContext) -> None:
    """Create (or migrate) the database and the model registry folder."""
    database = bootstrap.initialise(ctx.settings)
    out.print(f"database ready: {database.url}")
    out.print(f"model registry: {ctx.settings.registry_path}")


@main.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: from the file name.")
@click.option("--actor", default=None, help="Who is importing (recorded in the audit log).")
@pass_context
def import_(ctx: CliContext, file: Path, fmt: str | None, actor: str | None) -> None:
    """Import coded episodes from a CSV or JSON lines FILE (all or nothing)."""
    database = ctx.database()
    actor = actor or f"cli:{getpass.getuser()}"
    try:
        with _progress() as progress:
            def track(rows):
                task = progress.add_task("validating", total=len(rows))
                for row in rows:
                    yield row
                    progress.advance(task)

            write_task = progress.add_task("writing", total=None)
            summary = bootstrap.import_file(
                database, ctx.codebook, file, actor=actor, fmt=fmt, track=track,
                write_progress=lambda n: progress.advance(write_task, n))
    except EpisodeValidationError as exc:
        _fail(f"{file}: {exc}")
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    out.print(f"{file}: {summary.inserted} new, {summary.revised} revised, "
              f"{summary.unchanged} unchanged")
    _print_stats(database)


def _print_stats(database) -> None:
    stats = database.episodes.stats()
    out.print(f"the database holds {stats['episodes']} episodes ({stats['restricted']} with a "
              f"restriction) on {stats['partners']} partners, {stats['intel_types']} intelligence "
              f"types and {stats['triggers']} triggers")


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: from the file name, "
              "or csv on standard output.")
@pass_context
def export(ctx: CliContext, file: Path | None, fmt: str | None) -> None:
    """Write every episode in the interchange format to FILE (default: standard output)."""
    database = ctx.database()
    rows = database.episodes.iter_rows()
    if file is None:
        count = write_rows(rows, sys.stdout, fmt or "csv")
    else:
        fmt = format_of(file, fmt)
        tmp = file.with_name(f".{file.name}.tmp")
        with tmp.open("w", encoding="utf-8", newline="") as stream:
            count = write_rows(rows, stream, fmt)
        tmp.replace(file)  # never leave a half-written export behind
    err.print(f"exported {count} episodes")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def vocab(ctx: CliContext, as_json: bool) -> None:
    """Show the codebook's vocabularies."""
    data = ctx.codebook.as_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    out.print(f"[bold]codebook version {data['version']}[/]")
    for section in ("blocs", "partners", "intel_types", "trigger_types", "levels", "severity",
                    "alignment", "confidence"):
        table = Table(title=section, title_justify="left")
        keys = list(data[section][0])
        for key in keys:
            table.add_column(key)
        for item in data[section]:
            table.add_row(*(str(item[k]) for k in keys))
        out.print(table)


def _date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None


@main.command()
@click.option("--partner", multiple=True, help="Partner code (repeatable).")
@click.option("--intel-type", multiple=True, help="Intelligence type code (repeatable).")
@click.option("--trigger-type", multiple=True, help="Trigger type code (repeatable).")
@click.option("--trigger-id", multiple=True, help="Trigger id (repeatable).")
@click.option("--level", multiple=True, type=click.IntRange(0, 3), help="Level (repeatable).")
@click.option("--since", help="Trigger date on or after (YYYY-MM-DD).")
@click.option("--until", help="Trigger date on or before (YYYY-MM-DD).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def episodes(ctx: CliContext, partner, intel_type, trigger_type, trigger_id, level, since, until,
             limit, offset, as_json) -> None:
    """List episodes, filtered."""
    for field, values in (("partner", partner), ("intel_type", intel_type),
                          ("trigger_type", trigger_type)):
        for value in values:
            try:
                ctx.codebook.check(field, value)
            except ValueError as exc:
                _fail(str(exc))
    where = EpisodeFilter(partner=partner, intel_type=intel_type, trigger_type=trigger_type,
                          trigger_id=trigger_id, level=level, since=_date(since),
                          until=_date(until))
    database = ctx.database()
    total = database.episodes.count(where)
    records = database.episodes.list(where, limit=limit, offset=offset)
    if as_json:
        click.echo(json.dumps({"total": total, "offset": offset, "episodes": records}, indent=2))
        return
    table = Table(title=f"{len(records)} of {total} episodes (offset {offset})",
                  title_justify="left")
    for column in ("trigger_date", "trigger_id", "partner", "intel_type", "level", "severity",
                   "alignment", "confidence", "revision"):
        table.add_column(column)
    for r in records:
        table.add_row(r["trigger_date"], r["trigger_id"], r["partner"], r["intel_type"],
                      str(r["level"]), str(r["severity"]), str(r["alignment"]), r["confidence"],
                      str(r["revision"]))
    out.print(table)


@main.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command(name="create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES))
@pass_context
def token_create(ctx: CliContext, name: str, role: str) -> None:
    """Issue a token; it is printed once, alone on the last line, and stored only as a hash."""
    try:
        value = ctx.database().tokens.create(name, role, actor=f"cli:{getpass.getuser()}")
    except TokenError as exc:
        _fail(str(exc))
    err.print(f"token {name!r} ({role}) created; keep it secret, it cannot be shown again:")
    click.echo(value)


@token.command(name="revoke")
@click.argument("name")
@pass_context
def token_revoke(ctx: CliContext, name: str) -> None:
    """Revoke the token called NAME at once."""
    try:
        ctx.database().tokens.revoke(name, actor=f"cli:{getpass.getuser()}")
    except TokenError as exc:
        _fail(str(exc))
    out.print(f"token {name!r} revoked")


@token.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def token_list(ctx: CliContext, as_json: bool) -> None:
    """List tokens (names and roles; never the tokens themselves)."""
    rows = ctx.database().tokens.list()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "role", "created_at", "revoked_at")
    for r in rows:
        table.add_row(r["name"], r["role"], r["created_at"], r["revoked_at"] or "")
    out.print(table)


def _registry(ctx: CliContext):
    from forecasting.registry import Registry

    return Registry(ctx.settings.registry_path)


def _print_fit(outcome) -> None:
    mv = outcome.version
    colour = "green" if mv.passed else "red"
    out.print(f"model version {mv.version}: [{colour}]{mv.verdict}[/] on {mv.episodes} episodes"
              + (" (identical fit already stored)" if outcome.reused else ""))
    _print_diagnostics(mv)
    if outcome.promoted:
        out.print(f"promoted {mv.version}: it is now the current model")
    elif not mv.passed:
        out.print("[red]not promoted[/]: the previous current version (if any) keeps serving")


def _print_diagnostics(mv) -> None:
    d = mv.metadata.get("diagnostics", {})
    loo = d.get("loo") or {}
    table = Table("check", "value", title=f"diagnostics of {mv.version}", title_justify="left")
    rows = [
        ("chains x draws", f"{d.get('chains')} x {d.get('draws')}"),
        ("max R-hat (rank-normalised)", d.get("max_rhat")),
        ("min bulk ESS", d.get("min_ess_bulk")),
        ("min tail ESS", d.get("min_ess_tail")),
        ("max relative MCSE", d.get("max_mcse_relative")),
        ("divergences", d.get("divergences")),
        ("tree-depth saturation", d.get("treedepth_fraction")),
        ("min E-BFMI", d.get("min_ebfmi")),
        ("PSIS-LOO elpd (se)", (loo.get("error") or
         f"{loo.get('elpd', float('nan')):.1f} ({loo.get('se', float('nan')):.1f})") if loo else None),
        ("max Pareto k", loo.get("max_pareto_k")),
        ("Pareto k counts", loo.get("pareto_k_counts")),
        ("posterior predictive flags", len((d.get("ppc") or {}).get("flags", []))),
        ("parameterisation", d.get("parameterization")),
        ("sampling seconds", (d.get("timings") or {}).get("sampling")),
    ]
    for name, value in rows:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        table.add_row(name, shown)
    out.print(table)
    verdict = mv.verdict
    out.print(f"verdict: [{'green' if verdict == 'pass' else 'red'}]{verdict}[/]")
    for reason in mv.reasons:
        out.print(f"  - {reason}")


@main.command()
@click.option("--no-promote", is_flag=True, help="Store the version but do not make it current.")
@pass_context
def fit(ctx: CliContext, no_promote: bool) -> None:
    """Fit the model to every stored episode, gate it, and promote it if it passes."""
    from forecasting.services.fits import fit_and_register

    database = ctx.database()
    if database.episodes.count() == 0:
        _fail("the database holds no episodes; `forecast import FILE` first")
    s = ctx.settings.sampler
    err.print(f"fitting with {s.sampler}: {s.chains} chains x {s.draws} draws "
              f"(+{s.tune} tuning) ...")
    outcome = fit_and_register(ctx.settings, database, _registry(ctx), ctx.codebook,
                               promote=not no_promote, progress=err.is_terminal)
    _print_fit(outcome)
    if not outcome.version.passed:
        sys.exit(FIT_FAILED_GATE)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@pass_context
def models(ctx: CliContext, as_json: bool) -> None:
    """List model versions, newest first, with their verdicts."""
    registry = _registry(ctx)
    current = registry.current_or_none()
    rows = [{"version": mv.version, "fitted_at": mv.fitted_at, "episodes": mv.episodes,
             "verdict": mv.verdict, "reasons": mv.reasons,
             "current": current is not None and mv.version == current.version}
            for mv in registry.versions()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("", "version", "fitted_at", "episodes", "verdict", "reasons")
    for r in rows:
        table.add_row("*" if r["current"] else "", r["version"], r["fitted_at"],
                      str(r["episodes"]), r["verdict"], "; ".join(r["reasons"]))
    out.print(table)


@main.command()
@click.argument("version")
@pass_context
def promote(ctx: CliContext, version: str) -> None:
    """Make a passing VERSION current (also how to roll back)."""
    from forecasting.registry import RegistryError

    try:
        mv = _registry(ctx).promote(version)
    except (RegistryError, LookupError) as exc:
        _fail(str(exc))
    ctx.database().audit("model:promote", f"cli:{getpass.getuser()}", {"version": mv.version})
    out.print(f"{mv.version} is now the current model")


@main.command()
@click.argument("version", default="current")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def diagnose(ctx: CliContext, version: str, as_json: bool) -> None:
    """Show the diagnostics and verdict of VERSION (default: the current one)."""
    from forecasting.registry import RegistryError

    try:
        mv = _registry(ctx).get(version)
    except (RegistryError, LookupError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps({"version": mv.version, "verdict": mv.verdict,
                               "reasons": mv.reasons,
                               "diagnostics": mv.metadata.get("diagnostics", {})}, indent=2))
        return
    _print_diagnostics(mv)


# ---- paste into forecasting/cli.py (after `diagnose`) ---------------------------------------
def _print_report(report: dict, tables, as_json: bool) -> None:
    """An evaluation report as JSON, or as tables and where it was stored."""
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for table in tables(report):
        out.print(table)
    err.print(f"stored in {report['stored_in']}" if report.get("stored_in")
              else "no model version: results not stored")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--version", default="current", show_default=True,
              help="Model version whose priors are backtested; results are stored with it.")
@click.option("--step", "step_months", type=click.IntRange(1), default=24, show_default=True,
              help="Months between forecast origins.")
@click.option("--horizon", "horizon_months", type=click.IntRange(1), default=24,
              show_default=True, help="Months forecast after each origin.")
@click.option("--min-train", type=click.IntRange(1), default=200, show_default=True,
              help="Episodes before the first origin.")
@pass_context
def backtest(ctx: CliContext, as_json: bool, version: str, step_months: int,
             horizon_months: int, min_train: int) -> None:
    """Rolling-origin backtest: the model's scores beside baselines' on the same folds."""
    from forecasting.evaluation import cli_format
    from forecasting.evaluation.reports import backtest_report

    database = ctx.database()
    try:
        with _progress() as progress:
            task = progress.add_task("backtest folds", total=None)
            report = backtest_report(
                ctx.settings, database, ctx.codebook, registry=_registry(ctx), version=version,
                step_months=step_months, horizon_months=horizon_months, min_train=min_train,
                progress=lambda done, total: progress.update(task, completed=done, total=total))
    except (ValueError, LookupError) as exc:
        _fail(str(exc))
    finally:
        database.dispose()
    _print_report(report, cli_format.backtest_tables, as_json)


@main.command()
@click.option("--sims", "n_sims", type=click.IntRange(1), default=100, show_default=True,
              help="Number of simulations.")
@click.option("--episodes", "n_episodes", type=click.IntRange(10), default=600,
              show_default=True, help="Episodes per simulated data set.")
@click.option("--jobs", "n_jobs", type=click.IntRange(1), default=None,
              help="Worker processes (default: one per core).")
@click.option("--version", default="current", show_default=True,
              help="Model version whose priors are checked; results are stored with it.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
def sbc(ctx: CliContext, n_sims: int, n_episodes: int, n_jobs: int | None, version: str,
        seed: int, as_json: bool) -> None:
    """Simulation-based calibration: rank-uniformity tests and interval coverage."""
    from forecasting.evaluation import cli_format
    from forecasting.evaluation.reports import sbc_report

    try:
        report = sbc_report(ctx.settings, ctx.codebook, registry=_registry(ctx), version=version,
                            n_sims=n_sims, n_episodes=n_episodes, n_jobs=n_jobs, seed=seed)
    except (ValueError, LookupError, RuntimeError) as exc:
        _fail(str(exc))
    _print_report(report, cli_format.sbc_tables, as_json)


@main.command()
@click.argument("version", default="current")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--recompute", is_flag=True, help="Ignore a stored result.")
@pass_context
def sensitivity(ctx: CliContext, version: str, as_json: bool, recompute: bool) -> None:
    """Power-scaling prior/likelihood sensitivity of VERSION (default: the current one)."""
    from forecasting.evaluation import cli_format
    from forecasting.evaluation.reports import sensitivity_report
    from forecasting.registry import RegistryError

    try:
        report = sensitivity_report(ctx.settings, _registry(ctx), version, recompute=recompute)
    except (RegistryError, LookupError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for table in cli_format.sensitivity_tables(report):
        out.print(table)
# ---- end -------------------------------------------------------------------------------------


@main.command()
@click.argument("partner")
@click.argument("intel_type")
@click.option("--trigger-type", default="disclosure_incident", show_default=True)
@click.option("--severity", type=click.IntRange(0, 3), default=2, show_default=True)
@click.option("--alignment", type=click.IntRange(0, 3), default=1, show_default=True)
@click.option("--version", default="current", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def query(ctx: CliContext, partner, intel_type, trigger_type, severity, alignment, version,
          as_json) -> None:
    """Forecast for PARTNER restricting INTEL_TYPE under a scenario."""
    from forecasting.registry import RegistryError
    from forecasting.serving.forecasts import ForecastEngine, NotInModelError, ScenarioError

    try:
        engine = ForecastEngine.from_version(_registry(ctx), version, ctx.codebook)
        forecast = engine.forecast(partner, intel_type, trigger_type, severity, alignment)
    except (RegistryError, LookupError, ValueError, NotInModelError, ScenarioError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(forecast, indent=2))
        return
    scenario = forecast["scenario"]
    out.print(f"[bold]{partner} restricting {intel_type}[/] after a {scenario['trigger_type']} "
              f"(severity {severity}, alignment {alignment})")
    table = Table("outcome", "mean", "median", "50% interval", "90% interval")
    names = {k: v["name"] for k, v in ctx.codebook.levels.items()}
    for label, stats in [("any restriction", forecast["any_restriction"])] + [
            (f"level {k} ({names[int(k)]})", v) for k, v in forecast["levels"].items()]:
        table.add_row(label, f"{stats['mean']:.3f}", f"{stats['median']:.3f}",
                      "[{:.3f}, {:.3f}]".format(*stats["ci50"]),
                      "[{:.3f}, {:.3f}]".format(*stats["ci90"]))
    out.print(table)
    m = forecast["model"]
    out.print(f"model {m['version']} fitted {m['fitted_at']} on {m['episodes']} episodes, "
              f"verdict {m['verdict']}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=int, show_default=True)
@click.option("--workers", default=2, type=int, show_default=True)
@pass_context
def serve(ctx: CliContext, host: str, port: int, workers: int) -> None:
    """Serve the API with gunicorn (no refit worker)."""
    from api.serving import serve_api

    ctx.database()  # refuse to start on an uninitialised database
    serve_api(ctx.settings, host, port, workers)


def _prepare(ctx: CliContext) -> None:
    """Initialise, seed an empty database, fit and promote if no version is current.

    The fit runs as `forecast fit` in a child process: the web workers are forked from
    this one, and must not inherit the sampler's threads, compiled code and memory.
    """
    import subprocess

    database = bootstrap.initialise(ctx.settings)
    summary = bootstrap.seed_if_empty(database, ctx.settings)
    if summary is not None:
        out.print(f"imported {summary.inserted} seed episodes from "
                  f"{ctx.settings.seed_episodes_path}")
    _print_stats(database)
    registry = _registry(ctx)
    if registry.current_or_none() is None:
        s = ctx.settings.sampler
        out.print(f"no current model: fitting ({s.sampler}, {s.chains} chains x {s.draws} "
                  "draws); this takes a minute or two the first time ...")
        fitted = subprocess.run([sys.executable, "-m", "forecasting.cli", "fit"])
        if fitted.returncode == FIT_FAILED_GATE:
            _fail("the fit failed its diagnostics gate, so there is no model to serve; "
                  "see the reasons above")
        if fitted.returncode != 0 or registry.current_or_none() is None:
            _fail(f"the fit stopped with exit code {fitted.returncode}, so there is no model "
                  "to serve; see the errors above")
    else:
        out.print(f"current model: {registry.current().version}")


@main.group()
def priors() -> None:
    """Show, check (prior predictive) and set the priors the next fit will use."""


@priors.command(name="show")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def priors_show(ctx: CliContext, as_json: bool) -> None:
    """The active prior set: the newest submitted, else priors/default.toml."""
    from forecasting.services.fits import active_priors

    active, source = active_priors(ctx.database(), ctx.settings)
    if as_json:
        click.echo(json.dumps({"source": source, "content_hash": active.content_hash,
                               "priors": active.to_dict()}, indent=2))
        return
    out.print(f"priors from {source} (hash {active.content_hash[:12]})")
    table = Table("parameter", "distribution", "arguments", "centred")
    for name, spec in active.to_dict().items():
        table.add_row(name, spec["dist"], json.dumps(spec.get("kwargs", {})),
                      str(spec.get("centered", "from the data")))
    out.print(table)


def _priors_from(ctx: CliContext, file: Path | None):
    from forecasting.model.priors import PriorConfigError, load_priors
    from forecasting.services.fits import active_priors

    try:
        return load_priors(file) if file else active_priors(ctx.database(), ctx.settings)[0]
    except (PriorConfigError, OSError) as exc:
        _fail(f"{file}: {exc}" if file else str(exc))


@priors.command(name="check")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False,
                                                         path_type=Path))
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the prior predictive to this PNG file.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def priors_check(ctx: CliContext, file: Path | None, png: Path | None, as_json: bool) -> None:
    """Prior predictive of FILE (a priors TOML; default: the active set); nothing is saved."""
    from forecasting.model.fitting import plot_prior_predictive, prior_predictive

    summary = prior_predictive(ctx.codebook, _priors_from(ctx, file))
    if png:
        plot_prior_predictive(summary, png)
        err.print(f"wrote {png}")
    summary.pop("samples")
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    table = Table("before any data", "mean", "5%", "25%", "50%", "75%", "95%")
    names = {k: v["name"] for k, v in ctx.codebook.levels.items()}
    for label, d in [("P(any restriction)", summary["any_restriction"])] + [
            (f"P(level {k}: {names[int(k)]})", v) for k, v in summary["levels"].items()]:
        table.add_row(label, f"{d['mean']:.3f}", *(f"{v:.3f}" for v in d["quantiles"].values()))
    out.print(table)


@priors.command(name="set")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--note", default="", help="Why (kept in the audit log).")
@pass_context
def priors_set(ctx: CliContext, file: Path, note: str) -> None:
    """Make FILE (a priors TOML) the active prior set; the model goes stale and refits."""
    from forecasting.refits import RefitService

    new = _priors_from(ctx, file)
    database = ctx.database()
    actor = f"cli:{getpass.getuser()}"
    before = database.priors.latest()
    record = database.priors.save(new.to_dict(), new.content_hash, actor, note)
    if before is not None and before["id"] == record["id"]:
        out.print("these priors are already active; nothing changed")
        return
    job = RefitService.from_settings(ctx.settings, database).request("priors", actor)
    out.print(f"prior set #{record['id']} is active; refit {job['id']} queued")


@main.command()
@click.option("--threads", default=1, type=int, show_default=True,
              help="Consumer threads; refits still run one at a time.")
@pass_context
def worker(ctx: CliContext, threads: int) -> None:
    """Run the refit worker: fits queued refits, gates them, promotes the ones that pass."""
    from forecasting.model.fitting import warm_up
    from forecasting.refits import RefitService
    from forecasting.services.fits import active_priors

    database = ctx.database()
    service = RefitService.from_settings(ctx.settings, database)
    requeued = service.sweep()  # jobs of a worker that died are picked up again
    where = ctx.settings.queue_url or ctx.settings.instance_path / "queue.sqlite3"
    err.print(f"refit worker on {where}" + (f"; requeued {requeued}" if requeued else ""))
    # compile now, so that the first refit does not pay it (~35 s)
    seconds = warm_up(database.episodes.frame(), ctx.codebook,
                      active_priors(database, ctx.settings)[0], ctx.settings.sampler)
    err.print(f"model compiled in {seconds:.0f} s; waiting for refits")
    service.consumer(workers=threads).run()


@main.command()
@click.option("--limit", default=20, type=int, show_default=True)
@click.option("--now", "request_now", is_flag=True,
              help="Queue a refit now (coalesces with one already queued).")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def refits(ctx: CliContext, limit: int, request_now: bool, as_json: bool) -> None:
    """Show whether the current model is stale, and the queued, running and past refits."""
    from forecasting.refits import RefitService, model_status

    database = ctx.database()
    if request_now:
        job = RefitService.from_settings(ctx.settings, database).request(
            "manual", f"cli:{getpass.getuser()}", delay=0)
        err.print(f"refit {job['id']} queued")
    status = model_status(database, _registry(ctx))
    history = database.refits.list(limit=limit)
    if as_json:
        click.echo(json.dumps({**status, "history": history}, indent=2))
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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=int, show_default=True)
@click.option("--workers", default=2, type=int, show_default=True, help="Web workers.")
@pass_context
def run(ctx: CliContext, host: str, port: int, workers: int) -> None:
    """Initialise, import the seed data if empty, fit if no model is current, then serve
    the API and one refit worker until Ctrl-C."""
    import subprocess

    from api.serving import serve_api

    _prepare(ctx)
    refit_worker = subprocess.Popen([sys.executable, "-m", "forecasting.cli", "worker"])
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
        serve_api(ctx.settings, host, port, workers)
    except BaseException:
        stop_worker()
        raise
    stop_worker()


if __name__ == "__main__":
    main()
