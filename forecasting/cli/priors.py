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
@click.option("--note", default="", help="Why (required; kept in the history and the audit "
                                         "log).")
@click.option("--actor", default=None, help="Who is submitting (default: cli:USER).")
@click.option("--json", "as_json", is_flag=True, help="Print what `PUT /v1/priors` answers.")
@pass_context
def priors_set(ctx: CliContext, file: Path, note: str, actor: str | None, as_json: bool) -> None:
    """Make FILE (a priors TOML) the active prior set; the model goes stale and refits.

    An elicited file's [meta] statements are stored with the set (`forecast priors history`)."""
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


# -- the workbench (issue 21): statements -> priors, consequences, history -----------------------


def _print_statements(checks: list[dict]) -> None:
    table = Table("statement", "stated", "achieved", "quantiles: target -> achieved", "met")
    for c in checks:
        quantiles = "; ".join(f"q{q['level']:.3g}: {q['target']:.3g} -> {q['achieved']:.3g}"
                              for q in c["quantiles"])
        table.add_row(f"{c['id']}\n[dim]{c['statement']}[/]", f"{c['target_probability']:g}",
                      f"{c['achieved_probability']:.3f}", quantiles,
                      "[green]yes[/]" if c["met"] else "[red]NO[/]")
    out.print(table)


@priors.command(name="elicit")
@click.argument("statements", type=FILE)
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the prior file here (default: print it).")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw each statement against the prior's predictive to this PNG; "
                   "its prior predictive goes beside it (NAME-check.png).")
@click.option("--force", is_flag=True, help="Write the prior file even when statements are "
                                            "not met (its [meta] says met = false).")
@click.option("--json", "as_json", is_flag=True,
              help="Print what `POST /v1/priors/elicit` answers.")
@pass_context
def priors_elicit(ctx: CliContext, statements: Path, out_file: Path | None, png: Path | None,
                  force: bool, as_json: bool) -> None:
    """Solve for a prior set meeting the outcome-scale STATEMENTS (a TOML file; format in
    docs/workbench.md); show how well each is met; write an ordinary prior file recording
    them. Nothing is stored: make it active with `forecast priors set FILE --note WHY`.

    Exits 1 when the statements cannot all be met (each is named, as conflicting or
    unreachable); nothing is written then unless --force."""
    import tomllib

    from forecasting.model.elicitation import StatementError
    from forecasting.services.workbench import elicit_priors

    try:
        raw = tomllib.loads(statements.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        fail(f"{statements}: not a readable TOML file: {exc}")
    try:
        doc = elicit_priors(ctx.codebook, ctx.database(), ctx.settings, raw,
                            keep_samples=png is not None)
    except StatementError as exc:
        for problem in exc.errors or [{"field": "statements", "message": str(exc)}]:
            err.print(f"{statements}: {problem['field']}: {problem['message']}",
                      highlight=False, soft_wrap=True)
        fail(f"{statements}: not usable; nothing was written")
    except PriorConfigError as exc:
        fail(f"{statements}: {exc}")
    if png:
        from forecasting.model.prior_predictive import plot_prior_predictive, plot_statements

        plot_statements(doc["statements"], png)
        check_png = png.with_name(f"{png.stem}-check{png.suffix}")
        plot_prior_predictive(doc["prior_predictive"], check_png)
        doc["prior_predictive"].pop("samples")
        err.print(f"wrote {png} and {check_png}")
    written = out_file is not None and (doc["met"] or force)
    if written:
        out_file.write_text(doc["prior_file"], encoding="utf-8")
    if as_json:
        echo_json(doc)
    else:
        _print_statements(doc["statements"])
        for name, change in doc["changes"].items():
            out.print(f"{name}: {json.dumps(change['from']['kwargs'])} -> "
                      f"{json.dumps(change['to']['kwargs'])}", highlight=False)
        if out_file is None and (doc["met"] or force):
            out.print(doc["prior_file"], highlight=False, markup=False)
    for conflict in doc["conflicts"]:
        err.print(f"{conflict['kind']}: {conflict['message']}", highlight=False, soft_wrap=True)
    if written:
        err.print(f"wrote {out_file} (hash {doc['content_hash'][:12]}); make it active with "
                  f"`forecast priors set {out_file} --note WHY`")
    if not doc["met"]:
        fail(f"{statements}: {len(doc['conflicts'])} statement(s) not met"
             + ("" if written else "; nothing was written (--force writes it anyway)"))


@priors.command(name="compare")
@click.argument("a")
@click.argument("b", default="active")
@click.option("--fit", "with_fits", is_flag=True,
              help="Also fit each set on the current data (a candidate version, stored, never "
                   "promoted) and score it by leaving triggers out: minutes.")
@click.option("--draws", type=click.IntRange(100, MAX_DRAWS), default=1000, show_default=True,
              help="Prior predictive draws per set (the same seed for both).")
@click.option("--max-refits", type=click.IntRange(0), default=0, show_default=True,
              help="With --fit: exact refits of high Pareto k triggers per set.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw both prior predictives side by side to this PNG file.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@pass_context
def priors_compare(ctx: CliContext, a: str, b: str, with_fits: bool, draws: int,
                   max_refits: int, png: Path | None, as_json: bool) -> None:
    """Compare prior sets A and B (default B: the active set) on both scales: the parameter
    diff and the prior predictive (outcome scale). Each is "active", "default", a stored
    set's id (#7) or a prior file. With --fit, also the forecasts each gives on the current
    data and its leave-one-trigger-out score (a long command: two fits and their LOTO)."""
    from forecasting.services.workbench import compare_priors, compare_with_fits

    try:
        if with_fits:
            doc = compare_with_fits(ctx.settings, ctx.database(), ctx.registry, ctx.codebook,
                                    a, b, actor=ctx.actor, max_refits=max_refits,
                                    progress=lambda m: err.print(m, highlight=False))
        else:
            doc = compare_priors(ctx.codebook, ctx.database(), ctx.settings, a, b, draws=draws,
                                 keep_samples=png is not None)
    except PriorConfigError as exc:
        fail(str(exc))
    if png:
        from forecasting.model.prior_predictive import plot_comparison

        both = doc.pop("prior_predictive", None) or compare_priors(
            ctx.codebook, ctx.database(), ctx.settings, a, b, draws=draws,
            keep_samples=True)["prior_predictive"]
        plot_comparison(both["a"], both["b"], png, labels=(doc["a"]["label"],
                                                           doc["b"]["label"]))
        err.print(f"wrote {png}")
    if as_json:
        echo_json(doc)
        return
    out.print(f"A: {doc['a']['label']} (hash {doc['a']['content_hash'][:12]})   "
              f"B: {doc['b']['label']} (hash {doc['b']['content_hash'][:12]})", highlight=False)
    changed = [p for p in doc["parameters"] if p["changed"]]
    table = Table("parameter", "A", "B")
    for p in changed:
        table.add_row(p["parameter"], f"{p['a']['dist']} {json.dumps(p['a']['kwargs'])}",
                      f"{p['b']['dist']} {json.dumps(p['b']['kwargs'])}")
    out.print(table if changed else "the two sets have the same priors")
    table = Table("before any data (a new trigger)", "A median [90%]", "B median [90%]")
    for row in doc["outcome"]:
        table.add_row(row["label"], *(f"{row[s]['median']:.3g} [{row[s]['low']:.3g}, "
                                      f"{row[s]['high']:.3g}]" for s in ("a", "b")))
    out.print(table)
    if with_fits:
        f = doc["forecasts"]
        out.print(f"forecasts under {f['scenario']}: {f['cells']} cells, mean |B - A| "
                  f"{f['mean_abs_difference']:.4f}, largest {f['max_abs_difference']:.4f}",
                  highlight=False)
        table = Table("partner", "type", "A mean", "B mean", "B - A")
        for r in f["largest"]:
            table.add_row(r["partner"], r["intel_type"], f"{r['a']['mean']:.3f}",
                          f"{r['b']['mean']:.3f}", f"{r['difference']:+.3f}")
        out.print(table)
        for side in ("a", "b"):
            s = doc[side]
            out.print(f"{side.upper()}: version {s['version']}"
                      f"{' (candidate, not served)' if s['candidate'] else ''}, verdict "
                      f"{s['verdict']}, elpd_loo {s['loto']['elpd_loo']:.1f} "
                      f"(SE {s['loto']['se']:.1f})", highlight=False)
        lo = doc["loto"]
        out.print(f"elpd B - A: {lo['elpd_diff_b_minus_a']:+.1f} (SE {lo['se']:.1f}) over "
                  f"{lo['n_triggers']} triggers: {lo['verdict']}", highlight=False)


@priors.command(name="history")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print what `GET /v1/priors/history` answers.")
@pass_context
def priors_history(ctx: CliContext, limit: int, as_json: bool) -> None:
    """Every stored prior set, newest first: who submitted it, why, the statements behind
    it, and the model versions fitted with it (candidates marked)."""
    from forecasting.services.workbench import prior_history

    rows = prior_history(ctx.database(), ctx.registry, limit=limit)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        out.print("no prior set has been stored; the default file is active")
        return
    table = Table("#", "created", "by", "note", "statements", "versions")
    for r in rows:
        statements = "\n".join(f"{s['id']} (q={s['probability']:g}, achieved "
                                f"{s.get('achieved_probability', float('nan')):.2f})"
                                for s in r["statements"] or [])
        versions = "\n".join(f"{v['version']} {v['verdict']}"
                              + (" current" if v["current"] else "")
                              + (" candidate" if v["candidate"] else "")
                              for v in r["versions"])
        table.add_row(str(r["id"]), r["created_at"][:19], r["created_by"], r["note"],
                      statements or "-", versions or "-")
    out.print(table)
