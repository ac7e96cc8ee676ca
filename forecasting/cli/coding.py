"""Coding quality commands: reliability, disagreements, adjudicate, sample, export, import."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click
from rich.table import Table

from forecasting.cli import CliContext, echo_json, err, fail, main, out, pass_context
from forecasting.coding.fields import CODED_FIELDS
from forecasting.coding.reliability import BOOTSTRAP_SAMPLES
from forecasting.domain.episodes import EpisodeValidationError
from forecasting.domain.interchange import FORMATS, format_of, write_rows
from forecasting.files import write_atomically
from forecasting.services import coding as coding_service


@main.group()
def coding() -> None:
    """Coding quality: inter-coder reliability, disagreements, adjudication, double coding."""


def _alpha(entry: dict) -> tuple[str, str]:
    if entry["alpha"] is None:
        return "-", "-"
    interval = entry.get("ci95")
    return (f"{entry['alpha']:.3f}",
            f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "-")


@coding.command()
@click.option("--samples", type=click.IntRange(100, 100_000), default=BOOTSTRAP_SAMPLES,
              show_default=True, help="Bootstrap resamples of the double-coded episodes.")
@click.option("--check", is_flag=True, help="Exit non-zero when a field is below the floor "
              "(FORECAST_CODING_ALPHA_FLOOR), as a refit's gate would fail.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def reliability(ctx: CliContext, samples: int, check: bool, as_json: bool) -> None:
    """Krippendorff's alpha per coded field, overall and per coder pair, with bootstrap 95%
    intervals; the floor a refit's gate checks."""
    report = coding_service.reliability_report(ctx.database(), ctx.settings, samples=samples)
    floor = report["floor"]
    if as_json:
        echo_json(report)
    else:
        out.print(f"{report['episodes']} double-coded episodes, {report['codings']} codings by "
                  f"{len(report['coders'])} coders; episodes by status: "
                  + ", ".join(f"{k} {v}" for k, v in report["coverage"].items()))
        table = Table(title="Krippendorff's alpha (95% bootstrap interval over episodes; "
                      "reliable >= 0.8, tentative >= 0.667)", title_justify="left")
        for column in ("field", "measure", "alpha", "95% interval", "reading", "episodes",
                       "agreement", "floor"):
            table.add_column(column)
        for field, entry in report["fields"].items():
            agreement = "-" if entry["agreement"] is None else f"{entry['agreement']:.0%}"
            needed = floor["required"].get(field)
            table.add_row(field, entry["measure"], *_alpha(entry), entry["reading"],
                          str(entry["episodes"]), agreement,
                          "-" if needed is None else f">= {needed:g}")
        out.print(table)
        for pair in report["pairs"]:
            pairs = Table(title=f"{pair['coders'][0]} and {pair['coders'][1]}: "
                          f"{pair['episodes']} episodes", title_justify="left")
            for column in ("field", "alpha", "95% interval", "reading", "agreement"):
                pairs.add_column(column)
            for field, entry in pair["fields"].items():
                agreement = "-" if entry["agreement"] is None else f"{entry['agreement']:.0%}"
                pairs.add_row(field, *_alpha(entry), entry["reading"], agreement)
            out.print(pairs)
        for line in floor["failures"] + floor["notes"]:
            out.print(line)
    if check and floor["failures"]:
        fail("; ".join(floor["failures"]))


@coding.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def disagreements(ctx: CliContext, as_json: bool) -> None:
    """Episodes whose coders disagree, awaiting adjudication (held back from fits meanwhile)."""
    found = coding_service.disagreements(ctx.database())
    if as_json:
        echo_json(found)
        return
    table = Table(title=f"{found['total']} episodes await adjudication", title_justify="left")
    for column in ("trigger_id", "partner", "intel_type", "field", "values by coder"):
        table.add_column(column)
    for entry in found["disagreements"]:
        for field, by_coder in entry["fields"].items():
            table.add_row(entry["trigger_id"], entry["partner"], entry["intel_type"], field,
                          ", ".join(f"{c}: {v}" for c, v in by_coder.items()))
    out.print(table)


def _assignments(pairs: tuple[str, ...]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or field.strip() not in CODED_FIELDS:
            raise click.BadParameter(f"{pair!r} must be FIELD=VALUE with FIELD one of "
                                     f"{list(CODED_FIELDS)}", param_hint="--set")
        values[field.strip()] = value.strip()
    return values


@coding.command()
@click.argument("trigger_id")
@click.argument("partner")
@click.argument("intel_type")
@click.option("--set", "assignments", multiple=True, required=True, metavar="FIELD=VALUE",
              help="A coded field's final value (repeatable), e.g. --set level=2.")
@click.option("--reason", required=True, help="Why this is the final value.")
@click.option("--actor", default=None, help="The adjudicator (recorded as the episode's coder "
              "and in the audit log); default: the command-line user.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def adjudicate(ctx: CliContext, trigger_id: str, partner: str, intel_type: str,
               assignments: tuple[str, ...], reason: str, actor: str | None,
               as_json: bool) -> None:
    """Record the final value of a double-coded episode (a revision, audited); queues a
    refit."""
    try:
        result = coding_service.adjudicate(
            ctx.database(), ctx.codebook, ctx.refits(), (trigger_id, partner, intel_type),
            _assignments(assignments), reason, actor=actor or ctx.actor)
    except EpisodeValidationError as exc:
        fail(str(exc).replace("nothing was imported", "nothing was adjudicated"))
    if as_json:
        echo_json(result)
        return
    changed = ", ".join(result["changed"]) or "no field"
    out.print(f"{trigger_id}/{partner}/{intel_type}: revision {result['revision']} by "
              f"{result['adjudicator']} ({changed} changed)")
    if result["refit"] is not None:
        out.print(f"refit {result['refit']['id']} queued")


@coding.command()
@click.argument("n", type=click.IntRange(1))
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draw.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: from the file name, "
              "or csv on standard output.")
@pass_context
def sample(ctx: CliContext, n: int, file: Path | None, seed: int, fmt: str | None) -> None:
    """N episodes stratified by partner, level and confidence, for a second coder: the
    interchange format with the coded fields blank, to FILE (default: standard output)."""
    rows = coding_service.second_coder_sample(ctx.database(), n, seed)
    if file is None:
        count = write_rows(rows, sys.stdout, fmt or "csv")
    else:
        text = io.StringIO(newline="")
        count = write_rows(rows, text, format_of(file, fmt))
        write_atomically(file, text.getvalue())
    err.print(f"sampled {count} episodes for a second coder (fill in the blank fields, then "
              "`forecast import` the file)")


@coding.command(name="export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@pass_context
def export_codings(ctx: CliContext, file: Path | None) -> None:
    """Write every coder's codings and every adjudication (JSON) to FILE (default: standard
    output): what `forecast export` does not carry. In the other instance, `forecast import`
    the episodes first, then `forecast coding import` this file."""
    document = coding_service.export_codings(ctx.database(), ctx.codebook)
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    if file is None:
        sys.stdout.write(text)
    else:
        write_atomically(file, text)  # never a half-written export
    err.print(f"exported {len(document['codings'])} codings and "
              f"{len(document['adjudications'])} adjudications")


@coding.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--actor", default=None, help="Who is importing (audit log); default: the "
              "command-line user.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def import_codings(ctx: CliContext, file: Path, actor: str | None, as_json: bool) -> None:
    """Add the codings and adjudications of a `forecast coding export` FILE, all or nothing
    (the episodes must be stored); queues a refit when anything was added."""
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"{file}: not a JSON document ({exc}); nothing was imported")
    summary = coding_service.import_codings(ctx.database(), ctx.codebook, ctx.refits(),
                                            document, actor=actor or ctx.actor)
    if as_json:
        echo_json(summary)
        return
    out.print(f"imported {summary['codings']} codings and {summary['adjudications']} "
              f"adjudications ({summary['unchanged']} already here)")
    if summary.get("refit") is not None:
        out.print(f"refit {summary['refit']['id']} queued")
