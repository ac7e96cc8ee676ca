"""Data commands: init, import, export, vocab, episodes."""

from __future__ import annotations

import datetime as dt
import io
import sys
from pathlib import Path

import click
from rich.table import Table

from forecasting.cli import CliContext, echo_json, err, fail, main, out, pass_context, print_stats
from forecasting.cli import progress_bar as make_progress
from forecasting.domain.episodes import EpisodeValidationError
from forecasting.domain.interchange import FORMATS, format_of, write_rows
from forecasting.files import write_atomically
from forecasting.services import episodes as episode_service
from forecasting.services.setup import initialise
from forecasting.store import EpisodeFilter


@main.command()
@pass_context
def init(ctx: CliContext) -> None:
    """Create (or migrate) the database and the model registry folder."""
    database = initialise(ctx.settings)
    out.print(f"database ready: {database.url}")
    out.print(f"model registry: {ctx.settings.registry_path}")
    database.dispose()


@main.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: from the file name.")
@click.option("--actor", default=None, help="Who is importing (recorded in the audit log).")
@pass_context
def import_(ctx: CliContext, file: Path, fmt: str | None, actor: str | None) -> None:
    """Import coded episodes from a CSV or JSON lines FILE (all or nothing); a change queues
    a refit."""
    database = ctx.database()
    try:
        with make_progress() as progress:
            def track(rows):
                task = progress.add_task("validating", total=len(rows))
                for row in rows:
                    yield row
                    progress.advance(task)

            write_task = progress.add_task("writing", total=None)
            outcome = episode_service.import_file(
                database, ctx.codebook, ctx.refits(), file, actor=actor or ctx.actor, fmt=fmt,
                track=track, write_progress=lambda n: progress.advance(write_task, n))
    except EpisodeValidationError as exc:
        fail(f"{file}: {exc}")
    except (ValueError, OSError) as exc:  # an unreadable file, or one of no known format
        fail(str(exc))
    summary = outcome.summary
    codings = f", {summary.coded} other coders' codings" if summary.coded else ""
    out.print(f"{file}: {summary.inserted} new, {summary.revised} revised, "
              f"{summary.unchanged} unchanged{codings}")
    print_stats(database)
    if outcome.refit is not None:
        out.print(f"refit {outcome.refit['id']} queued")


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: from the file name, "
              "or csv on standard output.")
@pass_context
def export(ctx: CliContext, file: Path | None, fmt: str | None) -> None:
    """Write every episode in the interchange format to FILE (default: standard output)."""
    rows = ctx.database().episodes.iter_rows()
    if file is None:
        count = write_rows(rows, sys.stdout, fmt or "csv")
    else:
        text = io.StringIO(newline="")
        count = write_rows(rows, text, format_of(file, fmt))
        write_atomically(file, text.getvalue())  # never a half-written export
    err.print(f"exported {count} episodes")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def vocab(ctx: CliContext, as_json: bool) -> None:
    """Show the codebook's vocabularies."""
    data = ctx.codebook.as_dict()
    if as_json:
        echo_json(data)
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
    """List episodes, filtered; an unknown code is an error naming the codes allowed."""
    where = EpisodeFilter(partner=partner, intel_type=intel_type, trigger_type=trigger_type,
                          trigger_id=trigger_id, level=level, since=_date(since),
                          until=_date(until))
    page = episode_service.list_episodes(ctx.database(), ctx.codebook, where, limit=limit,
                                         offset=offset)
    if as_json:
        echo_json(page)
        return
    records = page["episodes"]
    table = Table(title=f"{len(records)} of {page['total']} episodes (offset {offset})",
                  title_justify="left")
    for column in ("trigger_date", "trigger_id", "partner", "intel_type", "level", "severity",
                   "alignment", "confidence", "revision"):
        table.add_column(column)
    for r in records:
        table.add_row(r["trigger_date"], r["trigger_id"], r["partner"], r["intel_type"],
                      str(r["level"]), str(r["severity"]), str(r["alignment"]), r["confidence"],
                      str(r["revision"]))
    out.print(table)
