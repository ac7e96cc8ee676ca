"""Prior commands: show, check (prior predictive) and set the priors the next fit uses."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from forecasting.cli import CliContext, echo_json, err, fail, main, out, pass_context
from forecasting.model.priors import PriorConfigError, load_priors
from forecasting.services.priors import (
    active_priors,
    describe_priors,
    read_priors_file,
    submit_priors,
)

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@main.group()
def priors() -> None:
    """Show, check (prior predictive) and set the priors the next fit will use."""


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
        table.add_row(name, spec["dist"], json.dumps(spec.get("kwargs", {})),
                      str(spec.get("centered", "from the data")))
    out.print(table)


def _read(file: Path) -> dict:
    try:
        return read_priors_file(file)
    except (PriorConfigError, OSError) as exc:
        fail(f"{file}: {exc}")


@priors.command(name="check")
@click.argument("file", required=False, type=FILE)
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the prior predictive to this PNG file.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def priors_check(ctx: CliContext, file: Path | None, png: Path | None, as_json: bool) -> None:
    """Prior predictive of FILE (a priors TOML; default: the active set); nothing is saved."""
    from forecasting.model.prior_predictive import plot_prior_predictive, prior_predictive

    if file is None:
        chosen = active_priors(ctx.database(), ctx.settings)[0]
    else:
        try:
            chosen = load_priors(file)
        except (PriorConfigError, OSError) as exc:
            fail(f"{file}: {exc}")
    summary = prior_predictive(ctx.codebook, chosen)
    if png:
        plot_prior_predictive(summary, png)
        err.print(f"wrote {png}")
    summary.pop("samples")
    if as_json:
        echo_json(summary)
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
