"""Prior commands: show, validate, check (prior predictive) and set the priors the next fit
uses; each calls the service function its API route calls (forecasting.services.priors)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from forecasting.cli import CliContext, echo_json, err, fail, main, out, pass_context
from forecasting.model.prior_predictive import MAX_DRAWS
from forecasting.model.priors import PriorConfigError
from forecasting.services.errors import EXIT_CODE
from forecasting.services.priors import (
    CHECK_DRAWS,
    active_priors,
    check_priors,
    describe_priors,
    read_priors_file,
    submit_priors,
    validate_priors,
)

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@main.group()
def priors() -> None:
    """Show, validate, check (prior predictive) and set the priors the next fit will use."""


@priors.command(name="show")
@click.option("--json", "as_json", is_flag=True, help="Print what `GET /v1/priors` answers.")
@pass_context
def priors_show(ctx: CliContext, as_json: bool) -> None:
    """The active prior set: the newest submitted, else priors/default.toml."""
    doc = describe_priors(ctx.database(), ctx.settings)
    if as_json:
        echo_json(doc)
        return
    out.print(f"priors from {doc['source']} (hash {doc['content_hash'][:12]})")
    table = Table("parameter", "distribution", "arguments", "centred")
    for name, spec in doc["priors"].items():
        table.add_row(name, str(spec.get("dist")), json.dumps(spec.get("kwargs", {})),
                      str(spec.get("centered", "from the data")))
    out.print(table)
    for problem in doc.get("problems", []):  # a set stored before today's checks
        err.print(f"not usable: {problem['field']}: {problem['message']}", highlight=False,
                  soft_wrap=True)


def _read(file: Path) -> dict:
    try:
        return read_priors_file(file)
    except (PriorConfigError, OSError) as exc:
        fail(f"{file}: {exc}")


@priors.command(name="validate")
@click.argument("file", type=FILE)
@click.option("--json", "as_json", is_flag=True,
              help="Print {valid, content_hash, errors}: errors as field and message.")
@pass_context
def priors_validate(ctx: CliContext, file: Path, as_json: bool) -> None:
    """Check FILE (a priors TOML) as `forecast priors set` and `PUT /v1/priors` do, listing
    every problem; nothing is stored. Exits 1 if FILE is not a usable prior set."""
    raw = _read(file)
    try:
        validated = validate_priors(raw)
    except PriorConfigError as exc:
        problems = exc.errors or [{"field": "priors", "message": str(exc)}]
        if as_json:
            echo_json({"valid": False, "content_hash": None, "errors": problems})
            sys.exit(EXIT_CODE)
        for problem in problems:
            err.print(f"{file}: {problem['field']}: {problem['message']}", highlight=False,
                      soft_wrap=True)
        fail(f"{file}: {len(problems)} problem{'s' if len(problems) > 1 else ''}; nothing "
             f"was stored")
    if as_json:
        echo_json({"valid": True, "content_hash": validated.content_hash, "errors": []})
    else:
        out.print(f"{file}: a usable prior set (hash {validated.content_hash[:12]})")


@priors.command(name="check")
@click.argument("file", required=False, type=FILE)
@click.option("--draws", type=click.IntRange(10, MAX_DRAWS), default=CHECK_DRAWS,
              show_default=True, help="Prior draws (the API draws the default).")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the prior predictive to this PNG file.")
@click.option("--json", "as_json", is_flag=True,
              help="Print what `POST /v1/priors/check` answers.")
@pass_context
def priors_check(ctx: CliContext, file: Path | None, draws: int, png: Path | None,
                 as_json: bool) -> None:
    """Prior predictive of FILE (a priors TOML; default: the active set); nothing is saved."""
    try:
        if file is None:
            chosen, label = active_priors(ctx.database(), ctx.settings)
        else:
            chosen, label = _read(file), str(file)
        checked = check_priors(ctx.codebook, chosen, draws=draws, keep_samples=png is not None)
    except PriorConfigError as exc:
        fail(f"{label if file else 'the active priors'}: {exc}")
    summary = checked["prior_predictive"]
    if png:
        from forecasting.model.prior_predictive import plot_prior_predictive

        plot_prior_predictive(summary, png)
        err.print(f"wrote {png}")
        summary.pop("samples")
    if as_json:
        echo_json(checked)
        return
    table = Table("before any data (a new trigger)", "mean", "5%", "25%", "50%", "75%", "95%")
    names = {k: v["name"] for k, v in ctx.codebook.levels.items()}
    for label, d in [(d["label"], d) for d in summary["outcome"].values()] + [
            (f"P(level {k}: {names[int(k)]})", v) for k, v in summary["levels"].items()]:
        table.add_row(label, f"{d['mean']:.3g}", *(f"{v:.3g}" for v in d["quantiles"].values()))
    out.print(table)


@priors.command(name="set")
@click.argument("file", type=FILE)
@click.option("--note", default="", help="Why (kept in the audit log).")
@click.option("--actor", default=None, help="Who is submitting (default: cli:USER).")
@click.option("--json", "as_json", is_flag=True, help="Print what `PUT /v1/priors` answers.")
@pass_context
def priors_set(ctx: CliContext, file: Path, note: str, actor: str | None, as_json: bool) -> None:
    """Make FILE (a priors TOML) the active prior set; the model goes stale and refits."""
    raw = _read(file)
    try:
        submitted = submit_priors(ctx.database(), ctx.settings, ctx.refits(), raw,
                                  actor or ctx.actor, note)
    except PriorConfigError as exc:
        fail(f"{file}: {exc}")
    if as_json:
        echo_json(submitted.document)
    elif not submitted.changed:
        out.print("these priors are already active; nothing changed")
    else:
        out.print(f"prior set #{submitted.record['id']} is active; "
                  f"refit {submitted.refit['id']} queued")
