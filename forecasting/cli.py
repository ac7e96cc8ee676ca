"""The `forecast` console script: parses arguments, calls library code, prints results.

No domain logic lives here: every command is a thin face over a library function
that the API calls too.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import bootstrap
from .codebook import load_codebook
from .episodes import EpisodeValidationError
from .interchange import FORMATS, format_of, write_rows
from .settings import load_settings
from .store import EpisodeFilter
from .store.db import SchemaOutOfDateError
from .store.tokens import ROLES, TokenError

out = Console(soft_wrap=True)
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


@main.command()
@pass_context
def run(ctx: CliContext) -> None:
    """Initialise, import the seed episodes if the database is empty, and report."""
    database = bootstrap.initialise(ctx.settings)
    summary = bootstrap.seed_if_empty(database, ctx.settings)
    if summary is not None:
        out.print(f"imported {summary.inserted} seed episodes from "
                  f"{ctx.settings.seed_episodes_path}")
    _print_stats(database)


if __name__ == "__main__":
    main()
